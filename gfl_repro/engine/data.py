"""Datasets and loaders of a run, built from its DataConfig.

Training augmentation is made a pure function of (seed, epoch, image index): the sampler yields
``(epoch_seed, index)`` pairs and the dataset seeds torch's generator from them around the
transforms. So a resumed run, a run with another number of workers and each DDP rank see exactly
the same augmented images, and a resume can skip the batches already done without loading them.
"""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gfl_repro.config import DataConfig
from gfl_repro.data import mini
from gfl_repro.data.coco import CocoDetection
from gfl_repro.data.sampler import GroupSampler, ShardSampler, seed_worker
from gfl_repro.data.transforms import collate, inference_transforms, train_transforms
from gfl_repro.engine.distributed import DistInfo, barrier


class SeededDataset(Dataset):
    """Indexed by (seed, index): the transforms draw from a generator seeded by both."""

    def __init__(self, dataset: CocoDetection):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        seed, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + index)
            return self.dataset[index]


class ResumableSampler(Sampler):
    """Wraps GroupSampler: yields (epoch seed, index) and can skip the first batches of an epoch."""

    def __init__(self, inner: GroupSampler, seed: int, batch_size: int):
        self.inner, self.seed, self.batch_size = inner, seed, batch_size
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner) - self.skip_batches * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch_seed = self.seed * 10_007 + self.epoch
        indices = list(self.inner)[self.skip_batches * self.batch_size :]
        return iter([(epoch_seed, i) for i in indices])


def dataset_paths(cfg: DataConfig, split: str) -> tuple[Path, Path]:
    root = Path(cfg.root)
    if cfg.dataset == "mini":
        return mini.paths(root, split)
    ann, images = (
        (cfg.train_ann, cfg.train_images) if split == "train" else (cfg.val_ann, cfg.val_images)
    )
    return root / ann, root / images


@contextmanager
def generation_lock(root: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<root name>.lock`` beside ``root``: two processes that start
    on a missing built-in set (two trainings launched together) generate it once, and neither
    reads it while the other writes it."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_dataset(cfg: DataConfig, dist: DistInfo) -> None:
    """Generate the built-in dataset when absent (rank 0; the others wait); check files exist.
    A data.root that does not exist is an error, except a preset's own root of the built-in set
    (``mini.GENERATED_ROOTS``), which is generated."""
    generated = cfg.dataset == "mini" and Path(cfg.root) in map(Path, mini.GENERATED_ROOTS)
    if not Path(cfg.root).is_dir() and not generated:
        raise FileNotFoundError(
            f"data.root = {cfg.root}: no such folder. Put the {cfg.dataset} data set there or "
            "set data.root to where it is; nothing is downloaded at run time."
        )
    if cfg.dataset == "mini":
        if dist.is_main:
            with generation_lock(cfg.root):
                if not all(dataset_paths(cfg, s)[0].is_file() for s in mini.SPLITS):
                    mini.generate(cfg.root, cfg.mini_seed, cfg.mini_train, cfg.mini_val,
                                  cfg.mini_size, variant=cfg.mini_variant())  # fmt: skip
        barrier()
        mini.check_spec(cfg.root, cfg.mini_spec())
    for split in ("train", "val"):
        ann, images = dataset_paths(cfg, split)
        if not ann.is_file():
            raise FileNotFoundError(
                f"annotation file not found: {ann}. Put the {cfg.dataset} dataset under "
                f"{cfg.root} (annotations/instances_{{train,val}}2017.json, train2017/, val2017/) "
                "or set data.root; nothing is downloaded at run time."
            )
        if not images.is_dir():
            raise FileNotFoundError(f"image folder not found: {images} (data.root = {cfg.root})")


def check_val_set(cfg: DataConfig) -> None:
    """Parse and validate the val annotations and check that every val image file exists, so
    that a broken val set stops a run before its first iteration, not after its last."""
    ann, images = dataset_paths(cfg, "val")
    CocoDetection(ann, images).check_files()


def train_loader(cfg: DataConfig, dist: DistInfo, seed: int) -> DataLoader:
    ann, images = dataset_paths(cfg, "train")
    short_range = tuple(cfg.short_range) or None
    transforms = train_transforms(tuple(cfg.train_scale), short_range)
    dataset = CocoDetection(ann, images, filter_empty=True, transforms=transforms)
    sampler = GroupSampler(
        dataset.aspect_flags(), cfg.images_per_process, dist.world_size, dist.rank, seed
    )
    return DataLoader(
        SeededDataset(dataset),
        batch_size=cfg.images_per_process,
        sampler=ResumableSampler(sampler, seed, cfg.images_per_process),
        num_workers=cfg.workers,
        collate_fn=collate,
        worker_init_fn=seed_worker,
        persistent_workers=cfg.workers > 0,
        pin_memory=dist.device.type == "cuda",
    )


def val_loader(cfg: DataConfig, dist: DistInfo) -> DataLoader:
    ann, images = dataset_paths(cfg, "val")
    dataset = CocoDetection(ann, images, transforms=inference_transforms(tuple(cfg.test_scale)))
    return DataLoader(
        dataset,
        batch_size=cfg.val_images_per_process,
        sampler=ShardSampler(len(dataset), dist.world_size, dist.rank),
        num_workers=cfg.workers,
        collate_fn=collate,
        pin_memory=dist.device.type == "cuda",
    )
