"""Every experiment by paper table and row: a name, where it sits in the paper, and its diff.

An experiment is the preset's GFLV2 default (ATSS assignment, GFL head, general distribution,
DGQP with top-4 + mean, p = 64, decomposed J = C x I) plus a few ``--set`` overrides, so a table
is a list of names and a new variant is one line. Rows equal to the default (e.g. Table 1's
Top-k + Mean) are kept under their table's name too; the sweep identifies runs by resolved
config, so such rows are trained once.
"""

from dataclasses import dataclass

from experiments.presets import preset
from gfl_repro.config import CONV_QUALITY, Config, apply_overrides


@dataclass(frozen=True)
class Experiment:
    name: str
    table: str  # the paper table the row belongs to ("1" ... "6"; "main" for the defaults)
    row: str  # the row label as printed in the paper
    overrides: tuple[str, ...] = ()  # the diff from the GFLV2 default, as --set items
    # More --set items at some presets only: ((preset, items), ...).
    at_presets: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def overrides_at(self, preset_name: str) -> tuple[str, ...]:
        return self.overrides + sum((o for p, o in self.at_presets if p == preset_name), ())

    def describe(self) -> str:
        text = ", ".join(self.overrides) or "(the GFLV2 default)"
        for p, items in self.at_presets:
            text += f"; at {p}: {', '.join(items)}"
        return text


GFLV1 = ("model.quality.kind=none",)
DIRAC = ("model.head.box=dirac", "model.quality.kind=none")  # the "*" joint-representation rows
NATIVE = ("model.head.kind=native", "model.quality.kind=none")

# The detector families of Table 5: their own priors, assigner and neck (mmdetection R-50 1x).
RETINANET = (
    "model.detector=retinanet",
    "model.head.anchor_scale=4",
    "model.fpn_extra_source=input",
)
RETINANET_ANCHORS = ("model.head.anchor_ratios=0.5,1,2", "model.head.scales_per_octave=3")
FCOS = ("model.detector=fcos", "model.head.center_offset=0.5", "model.fpn_relu_before_extra=true")
FOVEABOX = (
    "model.detector=foveabox",
    "model.head.center_offset=0.5",
    "model.fpn_extra_source=input",
)
NMS_05 = ("model.inference.iou_thr=0.5",)  # RetinaNet's and FoveaBox's test-time NMS


def at_mini(*items: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """--set items for the mini presets only (mini and its smoke-test scale, tiny)."""
    return tuple((p, items) for p in ("mini", "tiny"))


# mini trains every network from scratch: there the towers of RetinaNet and FoveaBox without
# normalisation diverged at mini's learning rate (NaN focal loss in warm-up, iterations 188 and
# 153), so at mini they get GroupNorm, as the FCOS, ATSS and GFL towers have everywhere.
GN_TOWERS = ("model.head.plain_tower_norm=gn",)


def _table1() -> list[Experiment]:
    rows = [("topk", "Top-k(4)"), ("mean", "Mean"), ("var", "Var"), ("topk_mean", "Top-k + Mean"),
            ("topk_var", "Top-k + Var"), ("topk_mean_var", "Top-k + Mean + Var")]  # fmt: skip
    out = []
    for key, label in rows:
        stats = ",".join(key.split("_"))
        diff = () if key == "topk_mean" else (f"model.quality.statistics={stats}",)
        out.append(Experiment(f"t1_{key}", "1", label, diff))
    return out


def _table2() -> list[Experiment]:
    out = [Experiment("t2_k0", "2", "k = 0 (GFLV1)", GFLV1)]
    for k in (1, 2, 3, 4, 8, 16):
        diff = () if k == 4 else (f"model.quality.k={k}",)
        out.append(Experiment(f"t2_k{k}_p64", "2", f"k = {k}, p = 64", diff))
    for p in (8, 16, 32, 128, 256):
        out.append(
            Experiment(f"t2_k4_p{p}", "2", f"k = 4, p = {p}", (f"model.quality.hidden={p}",))
        )
    return out


def _table3() -> list[Experiment]:
    letters = "abcdefg"
    out = [Experiment("t3_atss_star", "3", "Baseline (ATSS* w/ joint representation)", DIRAC)]
    for letter, kind in zip(letters, CONV_QUALITY, strict=True):
        label = f"Convolutional features ({letter}) {kind.replace('_', ' ')}"
        out.append(Experiment(f"t3_{kind}", "3", label, (f"model.quality.kind={kind}",)))
    out.append(Experiment("t3_distribution", "3", "Distribution statistics"))
    return out


def _table4() -> list[Experiment]:
    out = [Experiment("t4_gflv1", "4", "Baseline (GFLV1)", GFLV1)]
    for d in (16, 32, 64, 128, 256):
        diff = ("model.quality.kind=composed", f"model.quality.composed_dim={d}")
        out.append(Experiment(f"t4_composed_d{d}", "4", f"Composed form, d = {d}", diff))
    out.append(Experiment("t4_decomposed", "4", "Decomposed form"))
    return out


def _table5() -> list[Experiment]:
    return [
        Experiment(
            "t5_retinanet",
            "5",
            "RetinaNet",
            RETINANET + RETINANET_ANCHORS + NATIVE + NMS_05,
            at_mini(*GN_TOWERS),
        ),
        Experiment("t5_retinanet_gflv2", "5", "RetinaNet + GFLV2", RETINANET),
        Experiment(
            "t5_foveabox",
            "5",
            "FoveaNet",
            FOVEABOX + NATIVE + NMS_05,
            at_mini(*GN_TOWERS),
        ),
        Experiment("t5_foveabox_gflv2", "5", "FoveaNet + GFLV2", FOVEABOX),
        Experiment("t5_fcos", "5", "FCOS", FCOS + NATIVE),
        Experiment("t5_fcos_gflv2", "5", "FCOS + GFLV2", FCOS),
        Experiment("t5_atss", "5", "ATSS", NATIVE),
        Experiment("t5_atss_gflv2", "5", "ATSS + GFLV2"),
    ]


def _table6() -> list[Experiment]:
    return [
        Experiment("t6_fcos_star", "6", "FCOS*", FCOS + DIRAC),
        Experiment("t6_atss_star", "6", "ATSS*", DIRAC),
        Experiment("t6_gflv1", "6", "GFLV1", GFLV1),
        Experiment("t6_gflv2", "6", "GFLV2 (ours)"),
    ]


def _table7() -> list[Experiment]:
    """GFLV2's main results (Table 7, run at the coco-2x-ms preset); Res2Net is not built."""
    return [
        Experiment("t7_r50", "7", "GFLV2 R-50"),
        Experiment("t7_r101", "7", "GFLV2 R-101", ("model.backbone=resnet101",)),
        Experiment(
            "t7_r101_dcn", "7", "GFLV2 R-101-DCN", ("model.backbone=resnet101", "model.dcn=true")
        ),  # fmt: skip
        Experiment(
            "t7_x101_32x4d_dcn",
            "7",
            "GFLV2 X-101-32x4d-DCN",
            ("model.backbone=resnext101_32x4d", "model.dcn=true"),
        ),  # fmt: skip
    ]


EXPERIMENTS = {
    e.name: e
    for e in [
        Experiment("gflv2", "main", "GFLV2 (Top-k(4) + Mean, p = 64, decomposed)"),
        Experiment("gflv1", "main", "GFLV1 (k = 0)", GFLV1),
        *_table1(),
        *_table2(),
        *_table3(),
        *_table4(),
        *_table5(),
        *_table6(),
        *_table7(),
    ]
}


TABLES = ("main", "1", "2", "3", "4", "5", "6", "7", "8")


def table(number: str) -> list[Experiment]:
    """The rows of a paper table, in the paper's order."""
    if str(number) == "8":  # training and inference cost of ATSS*, GFLV1, GFLV2 (Table 8)
        return [EXPERIMENTS[n] for n in ("t6_atss_star", "t6_gflv1", "t6_gflv2")]
    return [e for e in EXPERIMENTS.values() if e.table == str(number)]


def resolve(name: str, preset_name: str, overrides: list[str] | None = None) -> Config:
    """The config of experiment ``name`` at ``preset_name``, with extra ``--set`` overrides."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; `gfl-repro experiments` lists them")
    cfg = preset(preset_name)
    return apply_overrides(cfg, [*EXPERIMENTS[name].overrides_at(preset_name), *(overrides or [])])


def rows_of(name: str, preset_name: str) -> list[str]:
    """Every experiment (paper row) whose resolved config at ``preset_name`` equals ``name``'s,
    in registry order: the rows one run folder stands for, recorded in its env.json at launch so
    that tables and claims read them from the folder."""
    cfg = resolve(name, preset_name)
    return [n for n in EXPERIMENTS if resolve(n, preset_name) == cfg]


def canonical_name(name: str, preset_name: str) -> str:
    """The first experiment (in registry order) whose resolved config equals ``name``'s: rows
    shared between tables (e.g. t1_topk_mean, t2_k4_p64 and gflv2) share one run folder."""
    cfg = resolve(name, preset_name)
    return next(n for n in EXPERIMENTS if resolve(n, preset_name) == cfg)
