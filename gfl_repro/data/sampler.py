"""Aspect-ratio grouped sampling for training, a sharded sampler for inference, and a seeded
DataLoader builder.

Legend: N dataset size, R ranks (processes), b images per batch on one rank.
"""

import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gfl_repro.data.transforms import collate


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class GroupSampler(Sampler[int]):
    """Indices for a DataLoader with ``batch_size=samples_per_gpu`` whose every batch holds images
    of one group only (landscape, flag True, or not), as mmdetection's (Distributed)GroupSampler.

    Per epoch, with a generator seeded by (seed, epoch): each group is shuffled and padded, by
    cycling its own shuffled indices, to a multiple of ``samples_per_gpu * num_replicas``; it is cut
    into batches of ``samples_per_gpu``; the batches of all groups are shuffled together and rank r
    takes batches r, r + R, r + 2R, ... So the ranks' positions are disjoint and cover every index
    (the padding repeats a few), and every rank runs the same number of batches.
    """

    def __init__(
        self,
        flags: Sequence[bool] | np.ndarray,
        samples_per_gpu: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        if samples_per_gpu < 1:
            raise ValueError(f"samples_per_gpu must be >= 1, got {samples_per_gpu}")
        self.flags = np.asarray(flags, dtype=bool)  # (N,)
        self.samples_per_gpu = samples_per_gpu
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        chunk = samples_per_gpu * num_replicas
        sizes = (int((self.flags == f).sum()) for f in (False, True))
        self.num_samples = sum(_round_up(n, chunk) for n in sizes) // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunk = self.samples_per_gpu * self.num_replicas
        batches = []
        for flag in (False, True):
            group = rng.permutation(np.flatnonzero(self.flags == flag))
            if len(group) == 0:
                continue
            group = np.concatenate([group, np.resize(group, -len(group) % chunk)])
            batches.append(group.reshape(-1, self.samples_per_gpu))  # (n_batches, b)
        if not batches:
            return iter([])
        batches = np.concatenate(batches)
        batches = batches[rng.permutation(len(batches))]
        mine = batches[self.rank :: self.num_replicas].reshape(-1)  # (num_samples,)
        return iter(mine.tolist())


class ShardSampler(Sampler[int]):
    """Rank r of R takes the r-th contiguous slice of range(N), unshuffled and unpadded (for
    inference: every image is seen exactly once over the ranks)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.indices = np.array_split(np.arange(size), num_replicas)[rank].tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from its torch seed (base seed + worker id)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_dataloader(
    dataset: Dataset,
    samples_per_gpu: int,
    *,
    train: bool,
    num_workers: int = 2,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    collate_fn: Callable = collate,
) -> DataLoader:
    """A DataLoader for one rank. Training uses ``GroupSampler`` over ``dataset.aspect_flags()``
    (call ``loader.sampler.set_epoch(epoch)`` each epoch); inference uses ``ShardSampler``.

    Random transforms draw from torch's generator; in workers it is seeded by the loader from
    (seed, rank) and the epoch's iterator, so augmentations are reproducible for a given number
    of workers. With ``num_workers=0`` they use the main process's global torch generator.
    """
    if train:
        sampler = GroupSampler(dataset.aspect_flags(), samples_per_gpu, num_replicas, rank, seed)
    else:
        sampler = ShardSampler(len(dataset), num_replicas, rank)
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    return DataLoader(
        dataset,
        batch_size=samples_per_gpu,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
    )
