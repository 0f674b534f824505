"""The built-in dataset: synthetic shapes on cluttered backgrounds, in COCO format.

``generate(out_dir)`` writes::

    out_dir/train/000000.jpg ...          out_dir/val/000000.jpg ...
    out_dir/annotations/instances_train.json, instances_val.json
    out_dir/stats.json

Twelve categories told apart by shape only (colour and texture are drawn independently of the
class). Objects are 0.04 to 0.75 of the image side (log-uniform), rotated and aspect-jittered,
drawn in order so that later objects cover earlier ones; an object's box is the extent of its
visible pixels (of the sharp shape) and an object with less than ``MIN_VISIBLE`` of its shape
visible is left unannotated. About a third of the objects have soft edges (blurred, or low
contrast against the local background) so that where an edge lies is uncertain. Backgrounds mix
gradients, noise at two scales, lines and distractor strokes that belong to no category.

A ``Variant`` changes what the regime search of ``docs/differences.md`` may change: which
categories are drawn, how many objects take their category's own hue, the smallest object side.
The default variant draws exactly the set described above.

Each image is drawn from its own generator seeded by (seed, split, index), so the result does not
depend on the number of worker processes, and the json files are byte-identical for a seed.
"""

import colorsys
import json
import logging
import multiprocessing
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from gfl_repro.data.coco import CocoDetection, DatasetError, Transform

logger = logging.getLogger(__name__)

CATEGORIES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "crescent",
    "diamond",
    "arrow",
    "heart",
    "ellipse",
)
SPLITS = ("train", "val")
# The presets' own roots of the built-in set (mini, tiny): generated when absent. Any other
# data.root must exist (a typo is an error, not a new data set).
GENERATED_ROOTS = ("data/mini", "data/tiny")
MIN_VISIBLE = 0.4  # objects with a smaller visible share of their shape are not annotated
SOFT_SHARE = 1 / 3  # share of objects with blurred or low-contrast edges
SIZE_RANGE = (0.04, 0.75)  # object side (before rotation) as a share of the image side
MAX_OBJECTS = 15
SUPERSAMPLE = 2  # shape masks are drawn at 2x and box-filtered down (anti-aliased edges)
JPEG_QUALITY = 90
SIZE_BINS = (0, 32, 64, 128, 256)  # box sqrt-area histogram edges in pixels, last bin open


@dataclass(frozen=True)
class Variant:
    """The generator's knobs beyond seed, counts and image size; the default is the set above.

    classes: the categories drawn, in category-id order (a subset of CATEGORIES).
    class_colour: the share of objects whose colour takes their category's own hue (category i
        of n gets hue i / n, saturation and value still random); the others draw any RGB colour.
        0 keeps colour independent of the category.
    min_side: the smallest object side before rotation, as a share of the image side."""

    classes: tuple[str, ...] = CATEGORIES
    class_colour: float = 0.0
    min_side: float = SIZE_RANGE[0]

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in CATEGORIES]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(
                f"classes {self.classes}: need two or more distinct names of "
                f"{', '.join(CATEGORIES)}"
            )
        if not 0 <= self.class_colour <= 1:
            raise ValueError(f"class_colour = {self.class_colour}: must be in [0, 1]")
        if not 0 < self.min_side < SIZE_RANGE[1]:
            raise ValueError(f"min_side = {self.min_side}: must be in (0, {SIZE_RANGE[1]})")


def _regular(n: int, start_deg: float) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon on the unit circle."""
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([np.cos(angles), np.sin(angles)], 1)


_UNIT_CIRCLE = _regular(48, 0)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], 1)
    low, high = pts.min(0), pts.max(0)
    return 2 * (pts - low) / (high - low) - 1


_HEART = _heart()


def _shape_layers(name: str, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """Polygons (V, 2) in unit coordinates (about [-1, 1]^2, y down) with their fill: 255 adds to
    the shape, 0 cuts a hole (ring, crescent)."""
    if name in ("circle", "ellipse"):
        return [(_UNIT_CIRCLE, 255)]
    if name == "square":
        return [(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float), 255)]
    if name == "triangle":
        return [(_regular(3, -90) * [1.0, 1.15] + [0, 0.3], 255)]
    if name == "star":
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return [(_regular(10, -90) * radii[:, None], 255)]
    if name == "cross":
        t = rng.uniform(0.26, 0.4)
        x = [-t, t, t, 1, 1, t, t, -t, -t, -1, -1, -t]
        y = [-1, -1, -t, -t, t, t, 1, 1, t, t, -t, -t]
        return [(np.stack([x, y], 1), 255)]
    if name == "ring":
        return [(_UNIT_CIRCLE, 255), (_UNIT_CIRCLE * rng.uniform(0.5, 0.7), 0)]
    if name == "hexagon":
        return [(_regular(6, 0), 255)]
    if name == "crescent":
        cut = _UNIT_CIRCLE * rng.uniform(0.8, 0.95) + [rng.uniform(0.35, 0.55), 0]
        return [(_UNIT_CIRCLE, 255), (cut, 0)]
    if name == "diamond":
        a = rng.uniform(0.45, 0.7)
        return [(np.array([[0, -1], [a, 0], [0, 1], [-a, 0]], float), 255)]
    if name == "arrow":
        t, w, hx = rng.uniform(0.14, 0.24), rng.uniform(0.55, 0.8), rng.uniform(0.0, 0.3)
        x = [-1, hx, hx, 1, hx, hx, -1]
        y = [-t, -t, -w, 0, w, t, t]
        return [(np.stack([x, y], 1), 255)]
    if name == "heart":
        return [(_HEART, 255)]
    raise ValueError(f"unknown shape {name!r}")


def _shape_alpha(
    layers: list[tuple[np.ndarray, int]],
    center: np.ndarray,
    half: np.ndarray,
    angle: float,
    margin: int,
) -> tuple[np.ndarray, int, int]:
    """Anti-aliased coverage (h, w) uint8 of the rotated, scaled shape and its top-left corner
    (x0, y0) in image pixels; the canvas has ``margin`` free pixels around the shape."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    placed = [((v * half) @ rot.T + center, fill) for v, fill in layers]
    outer = placed[0][0]  # the first layer bounds the shape
    x0, y0 = np.floor(outer.min(0)).astype(int) - margin
    x1, y1 = np.ceil(outer.max(0)).astype(int) + margin
    canvas = Image.new("L", (int(x1 - x0) * SUPERSAMPLE, int(y1 - y0) * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)
    for pts, fill in placed:
        draw.polygon(((pts - [x0, y0]) * SUPERSAMPLE).ravel().tolist(), fill=fill)
    return np.asarray(canvas.reduce(SUPERSAMPLE)), int(x0), int(y0)


def _texture(rng: np.random.Generator, h: int, w: int, color: np.ndarray, soft: bool) -> np.ndarray:
    """(h, w, 3) float32 fill of an object: solid, noisy, striped or a gradient."""
    kind = rng.integers(0, 4) if not soft else rng.integers(0, 2)
    out = np.empty((h, w, 3), np.float32)
    out[:] = color
    if kind == 1:
        sigma = rng.uniform(4, 10) if soft else rng.uniform(8, 25)
        out += rng.normal(0, sigma, (h, w, 1)).astype(np.float32)
    elif kind >= 2:
        yy, xx = np.ogrid[:h, :w]
        theta = rng.uniform(0, np.pi)
        proj = (xx * np.cos(theta) + yy * np.sin(theta)).astype(np.float32)
        other = rng.uniform(0, 255, 3).astype(np.float32)
        if kind == 2:
            t = (np.sin(2 * np.pi * proj / rng.uniform(3, 12)) > 0).astype(np.float32)
        else:
            t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
        out += t[..., None] * (other - color)
    return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32: a two-colour gradient plus low- and mid-frequency noise."""
    yy, xx = np.ogrid[:size, :size]
    theta = rng.uniform(0, 2 * np.pi)
    proj = (xx * np.cos(theta) + yy * np.sin(theta)).astype(np.float32)
    t = (proj - proj.min()) / (proj.max() - proj.min())
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    image = c0 + t[..., None] * (c1 - c0)
    for cells, amplitude in ((rng.integers(3, 8), 45.0), (rng.integers(12, 32), 20.0)):
        grid = np.clip(128 + 50 * rng.normal(0, 1, (cells, cells, 3)), 0, 255).astype(np.uint8)
        noise = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
        image += (np.asarray(noise, np.float32) - 128) * (amplitude / 50 * rng.uniform(0.3, 1.2))
    return image


def _draw_clutter(rng: np.random.Generator, canvas: Image.Image, size: int) -> None:
    """Lines and distractors that belong to no category: scribbles, partial arcs, rectangle
    outlines (thin strokes, unlike the filled category shapes)."""
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 12)):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        width = int(rng.integers(1, 4))
        kind = rng.integers(0, 4)
        cx, cy = rng.uniform(0, size, 2)
        r = size * np.exp(rng.uniform(np.log(0.03), np.log(0.3)))
        if kind == 0:  # straight line, possibly across the image
            x2, y2 = rng.uniform(-0.2 * size, 1.2 * size, 2)
            draw.line([cx, cy, x2, y2], fill=color, width=width)
        elif kind == 1:  # scribble: a random walk
            steps = rng.normal(0, r / 2, (int(rng.integers(3, 8)), 2)).cumsum(0) + [cx, cy]
            draw.line(steps.ravel().tolist(), fill=color, width=width, joint="curve")
        elif kind == 2:  # partial arc, at most 200 degrees (a ring is a filled full annulus)
            start = rng.uniform(0, 360)
            end = start + rng.uniform(30, 200)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, end, fill=color, width=width)
        else:
            aspect = np.exp(rng.uniform(-0.7, 0.7))
            box = [cx - r * aspect, cy - r / aspect, cx + r * aspect, cy + r / aspect]
            draw.rectangle(box, outline=color, width=min(width, 2))


@dataclass
class _Object:
    category: int  # index into the variant's classes
    shape: str  # its name, one of CATEGORIES
    center: np.ndarray  # (2,) x, y in pixels
    half: np.ndarray  # (2,) half extents in pixels before rotation
    angle: float  # radians
    edge: str  # "sharp", "blurred" or "low_contrast"
    blur: float  # Gaussian radius in pixels of a blurred edge
    color: np.ndarray  # (3,) RGB


def _class_colour(rng: np.random.Generator, category: int, n_classes: int) -> np.ndarray:
    """(3,) RGB of the category's own hue (category / n_classes), random saturation and value."""
    hue = category / n_classes
    saturation, value = rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0)
    rgb = colorsys.hsv_to_rgb(hue, saturation, value)
    return (255 * np.array(rgb)).astype(np.float32)


def _sample_objects(rng: np.random.Generator, size: int, variant: Variant) -> list[_Object]:
    """Object parameters in drawing order: mostly large first, so that small objects are seldom
    buried, with some shuffling so that they sometimes are. ``category`` indexes variant.classes."""
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    sides = size * np.exp(rng.uniform(np.log(variant.min_side), np.log(SIZE_RANGE[1]), n))
    order = np.argsort(-(np.log(sides) + rng.normal(0, 0.6, n)))
    objects = []
    for side in sides[order]:
        category = int(rng.integers(0, len(variant.classes)))
        if variant.classes[category] == "ellipse":
            aspect = rng.uniform(0.4, 0.65)
        else:
            aspect = np.exp(rng.uniform(-0.12, 0.12))
        half = side / 2 * np.array([1.0, aspect]) / max(1.0, aspect)  # longer half = side / 2
        reach = 0.6 * side / 2  # up to about a fifth of the object may leave the image
        edge, blur = "sharp", 0.0
        if rng.random() < SOFT_SHARE:
            if rng.random() < 0.6:
                edge, blur = "blurred", float(np.clip(side * rng.uniform(0.04, 0.1), 0.8, 8.0))
            else:
                edge, blur = "low_contrast", float(rng.uniform(0.5, 1.2))
        center = rng.uniform(reach, size - reach, 2)
        angle = float(rng.uniform(0, 2 * np.pi))
        color = rng.uniform(0, 255, 3).astype(np.float32)
        # drawn only when the knob is on, so that the default variant keeps today's random stream
        if variant.class_colour > 0 and rng.random() < variant.class_colour:
            color = _class_colour(rng, category, len(variant.classes))
        objects.append(
            _Object(category, variant.classes[category], center, half, angle, edge, blur, color)
        )
    return objects


def _paint(
    rng: np.random.Generator, image: np.ndarray, owner: np.ndarray, index: int, obj: _Object
) -> dict:
    """Composite one object into ``image`` (H, W, 3) and mark its sharp shape in ``owner`` (H, W);
    returns where its mask lies, for the visibility pass."""
    size = image.shape[0]
    layers = _shape_layers(obj.shape, rng)
    margin = int(np.ceil(3 * obj.blur)) + 1
    alpha, x0, y0 = _shape_alpha(layers, obj.center, obj.half, obj.angle, margin)  # (h, w)
    mask = alpha >= 128  # the sharp shape: what the box is measured on
    h, w = alpha.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + w, size), min(y0 + h, size)
    local = np.s_[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    region = np.s_[iy0:iy1, ix0:ix1]
    if obj.blur > 0:
        alpha = np.asarray(Image.fromarray(alpha).filter(ImageFilter.GaussianBlur(obj.blur)))
    a = alpha[local].astype(np.float32)[..., None] / 255.0  # (h', w', 1)
    color = obj.color
    if obj.edge == "low_contrast" and mask[local].any():  # close to the local background
        background = image[region][mask[local]].mean(0)
        color = np.clip(background + rng.choice([-1, 1]) * rng.uniform(14, 30), 0, 255)
    fill = _texture(rng, iy1 - iy0, ix1 - ix0, color, soft=obj.edge != "sharp")  # (h', w', 3)
    image[region] += a * (fill - image[region])
    owner[region][mask[local]] = index
    return {"region": region, "local": local, "mask": mask, "shape_pixels": int(mask.sum())}


def _visible_boxes(
    owner: np.ndarray, objects: list[_Object], painted: list[dict]
) -> tuple[list, int]:
    """Annotations (category, xywh box of visible pixels, visible area, edge, occluded) of the
    objects with at least MIN_VISIBLE of their shape in view, and the number left out."""
    annotations, dropped = [], 0
    for index, (obj, p) in enumerate(zip(objects, painted, strict=True)):
        visible = owner[p["region"]] == index
        n_visible = int(visible.sum())
        if p["shape_pixels"] == 0 or n_visible < MIN_VISIBLE * p["shape_pixels"]:
            dropped += 1
            continue
        in_image = int(p["mask"][p["local"]].sum())
        rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
        x = p["region"][1].start + int(cols[0])
        y = p["region"][0].start + int(rows[0])
        box = [x, y, int(cols[-1] - cols[0]) + 1, int(rows[-1] - rows[0]) + 1]
        occluded = n_visible < 0.95 * in_image  # more than 5% covered by later objects
        annotations.append((obj.category, box, n_visible, obj.edge, occluded))
    return annotations, dropped


def _render_image(job: tuple[int, int, int, int, str, Variant]) -> tuple[list, int]:
    """Draw image ``index`` of split ``split_code``, write it as JPEG, return its annotations."""
    seed, split_code, index, size, path, variant = job
    rng = np.random.default_rng([seed, split_code, index])
    canvas = Image.fromarray(np.clip(_background(rng, size), 0, 255).astype(np.uint8))
    _draw_clutter(rng, canvas, size)
    image = np.asarray(canvas, dtype=np.float32).copy()
    owner = np.full((size, size), -1, np.int16)
    objects = _sample_objects(rng, size, variant)
    painted = [_paint(rng, image, owner, i, obj) for i, obj in enumerate(objects)]
    annotations, dropped = _visible_boxes(owner, objects, painted)
    image += rng.normal(0, rng.uniform(2, 7), image.shape[:2])[..., None].astype(np.float32)
    Image.fromarray(np.clip(image + 0.5, 0, 255).astype(np.uint8)).save(path, quality=JPEG_QUALITY)
    return annotations, dropped


def _coco_json(
    split: str, seed: int, size: int, results: list[tuple[list, int]], classes: tuple[str, ...]
) -> dict:
    images, annotations = [], []
    for index, (anns, _) in enumerate(results):
        images.append(
            {"id": index + 1, "file_name": f"{index:06d}.jpg", "width": size, "height": size}
        )
        for category, box, area, _, _ in anns:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": category + 1,
                    "bbox": box,
                    "area": float(area),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(classes)]
    info = {"description": "gfl_repro synthetic shapes", "split": split, "seed": seed, "size": size}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def _split_stats(results: list[tuple[list, int]], classes: tuple[str, ...]) -> dict:
    per_image = [len(anns) for anns, _ in results]
    anns = [a for image_anns, _ in results for a in image_anns]
    sides = np.array([np.sqrt(box[2] * box[3]) for _, box, _, _, _ in anns])
    hist, _ = np.histogram(sides, bins=[*SIZE_BINS, np.inf])
    n = max(len(anns), 1)
    counts = np.bincount([a[0] for a in anns], minlength=len(classes))
    return {
        "images": len(results),
        "objects": len(anns),
        "objects_per_image": {
            "min": int(min(per_image, default=0)),
            "mean": round(float(np.mean(per_image)) if per_image else 0.0, 3),
            "max": int(max(per_image, default=0)),
        },
        "per_category": {name: int(c) for name, c in zip(classes, counts, strict=True)},
        "size_histogram": {
            f"[{lo},{hi})": int(c)
            for lo, hi, c in zip(SIZE_BINS, [*SIZE_BINS[1:], "inf"], hist, strict=True)
        },
        "box_side_min_max": [float(sides.min()), float(sides.max())] if len(anns) else [0.0, 0.0],
        "blurred_share": round(sum(a[3] == "blurred" for a in anns) / n, 4),
        "low_contrast_share": round(sum(a[3] == "low_contrast" for a in anns) / n, 4),
        "occluded_share": round(sum(a[4] for a in anns) / n, 4),
        "dropped_occluded": int(sum(d for _, d in results)),
    }


def generate(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 3000,
    n_val: int = 500,
    size: int = 320,
    workers: int = 2,
    variant: Variant = Variant(),
) -> dict:
    """Write the dataset (layout in the module docstring) and return its statistics, also saved
    as ``out_dir/stats.json``: per split the number of images and objects, objects per image
    (min/mean/max), per-category counts, a histogram of box sqrt-area in pixels, the shares of
    blurred, of low-contrast and of occluded (over 5% covered) objects, and the number of objects
    left unannotated because less than MIN_VISIBLE of their shape is visible (covered by later
    objects or, rarely, cut by the border); plus what was generated (``spec``: seed, counts,
    size and the variant, which ``check_spec`` compares with a config) and the time in seconds."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    jobs = {}
    for code, (split, n) in enumerate(zip(SPLITS, (n_train, n_val), strict=True)):
        (out_dir / split).mkdir(exist_ok=True)
        jobs[split] = [
            (seed, code, i, size, str(out_dir / split / f"{i:06d}.jpg"), variant) for i in range(n)
        ]
    all_jobs = jobs["train"] + jobs["val"]
    if workers > 1:
        # Workers take the default SIGTERM action: a forked worker inherits its parent's handler,
        # and where that ignores SIGTERM (submitit's jobs do) the pool's terminate() would hang.
        reset = (signal.SIGTERM, signal.SIG_DFL)
        with multiprocessing.Pool(workers, initializer=signal.signal, initargs=reset) as pool:
            results = pool.map(_render_image, all_jobs, chunksize=16)
    else:
        results = [_render_image(job) for job in all_jobs]
    split_results = {"train": results[:n_train], "val": results[n_train:]}
    spec = {"seed": seed, "n_train": n_train, "n_val": n_val, "size": size, **asdict(variant)}
    stats = {"seed": seed, "size": size, "spec": spec}
    for split, res in split_results.items():
        coco = _coco_json(split, seed, size, res, variant.classes)
        with open(out_dir / "annotations" / f"instances_{split}.json", "w", encoding="utf-8") as f:
            json.dump(coco, f)
        stats[split] = _split_stats(res, variant.classes)
    stats["seconds"] = round(time.perf_counter() - start, 2)
    with open(out_dir / "stats.json", "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    logger.info(
        "generated %d + %d images in %.1f s at %s", n_train, n_val, stats["seconds"], out_dir
    )
    return stats


def recorded_spec(root: str | Path) -> dict | None:
    """The spec a generated set was written with (stats.json), None without stats.json. A set
    generated before stats.json held a spec has only the default variant's knobs."""
    path = Path(root) / "stats.json"
    if not path.is_file():
        return None
    stats = json.loads(path.read_text(encoding="utf-8"))
    if "spec" in stats:
        return {**stats["spec"], "classes": tuple(stats["spec"]["classes"])}
    counts = {f"n_{split}": stats[split]["images"] for split in SPLITS}
    return {"seed": stats["seed"], **counts, "size": stats["size"], **asdict(Variant())}


def check_spec(root: str | Path, expected: dict) -> None:
    """Raise DatasetError when the set at ``root`` was generated with other settings than
    ``expected`` (a config's DataConfig.mini_spec()): reusing it would train on other data."""
    found = recorded_spec(root)
    if found is None:
        return
    differ = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if differ:
        field = {"n_train": "train", "n_val": "val"}  # the config's names of the counts
        what = "; ".join(
            f"data.mini_{field.get(k, k)}: set has {a}, config asks {b}"
            for k, (a, b) in differ.items()
        )
        raise DatasetError(
            f"{Path(root) / 'stats.json'}: the built-in set there was generated with other "
            f"settings ({what}); set data.root to another folder or delete this one"
        )


def format_stats(stats: dict) -> str:
    """A few readable lines of ``generate``'s statistics."""
    lines = [f"generated in {stats['seconds']:.1f} s (seed {stats['seed']}, size {stats['size']})"]
    for split in SPLITS:
        s = stats[split]
        opi = s["objects_per_image"]
        lines += [
            f"{split}: {s['images']} images, {s['objects']} objects, per image "
            f"{opi['min']}/{opi['mean']}/{opi['max']} (min/mean/max)",
            f"  sizes (sqrt area px): {s['size_histogram']}",
            f"  blurred {s['blurred_share']:.1%}, low contrast {s['low_contrast_share']:.1%}, "
            f"occluded {s['occluded_share']:.1%}, "
            f"dropped (under {MIN_VISIBLE:.0%} visible) {s['dropped_occluded']}",
            f"  per category: {s['per_category']}",
        ]
    return "\n".join(lines)


def paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """(ann_file, img_dir) of a split of a generated set."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    return root / "annotations" / f"instances_{split}.json", root / split


def mini_dataset(
    root: str | Path, split: str, *, transforms: Transform | None = None
) -> CocoDetection:
    """A generated split as a CocoDetection, with the training filter on for 'train'."""
    ann_file, img_dir = paths(root, split)
    return CocoDetection(ann_file, img_dir, filter_empty=split == "train", transforms=transforms)


def contact_sheet(
    dataset_dir: str | Path, out_png: str | Path, n: int = 8, split: str = "val", columns: int = 4
) -> Path:
    """Save a PNG grid of the first ``n`` images of a split with their boxes and class names."""
    ann_file, img_dir = paths(dataset_dir, split)
    with open(ann_file, encoding="utf-8") as f:
        coco = json.load(f)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    font = ImageFont.load_default()
    tiles = []
    for img in coco["images"][:n]:
        tile = Image.open(img_dir / img["file_name"]).convert("RGB")
        zoom = max(1, 320 // max(tile.size))
        tile = tile.resize((tile.width * zoom, tile.height * zoom), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        for ann in by_image.get(img["id"], []):
            x, y, w, h = (v * zoom for v in ann["bbox"])
            draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(255, 255, 0), width=1)
            draw.text((x + 2, y + 1), names[ann["category_id"]], fill=(255, 255, 0), font=font)
        tiles.append(tile)
    if not tiles:
        raise ValueError(f"{ann_file} has no images")
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    sheet = Image.new("RGB", (cols * tw, rows * th))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * tw, (i // cols) * th))
    out_png = Path(out_png)
    sheet.save(out_png)
    return out_png


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Generate the built-in shapes dataset.")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = generate(args.out_dir, args.seed, args.n_train, args.n_val, args.size, args.workers)
    print(format_stats(result))
