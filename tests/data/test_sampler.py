from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from gfl_repro.data import GroupSampler, ShardSampler, build_dataloader, inference_transforms
from gfl_repro.data.mini import mini_dataset


def rank_indices(flags, samples_per_gpu, replicas, seed=0, epoch=0):
    out = []
    for rank in range(replicas):
        sampler = GroupSampler(flags, samples_per_gpu, replicas, rank, seed)
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == len(sampler)
        out.append(indices)
    return out


@pytest.mark.parametrize("samples_per_gpu,replicas", [(2, 1), (2, 3), (4, 2)])
def test_batches_never_mix_orientations(samples_per_gpu, replicas):
    flags = np.random.default_rng(0).random(37) < 0.6
    for indices in rank_indices(flags, samples_per_gpu, replicas):
        batches = np.array(indices).reshape(-1, samples_per_gpu)
        assert all(len(set(flags[b])) == 1 for b in batches)


def test_ranks_are_disjoint_and_cover_the_data():
    # 12 landscape and 6 portrait images, 2 a batch on 3 ranks: both groups are multiples of
    # 2 * 3, so no padding and the ranks partition range(18) exactly
    flags = np.array([True] * 12 + [False] * 6)
    np.random.default_rng(1).shuffle(flags)
    per_rank = rank_indices(flags, 2, 3)
    assert [len(r) for r in per_rank] == [6, 6, 6]
    assert sorted(sum(per_rank, [])) == list(range(18))


def test_padding_repeats_only_within_a_group():
    # 7 landscape, 2 portrait, 2 a batch on 2 ranks: groups padded to 8 and 4 -> 12 positions,
    # 6 a rank; every index appears, 3 of them twice
    flags = np.array([True] * 7 + [False] * 2)
    per_rank = rank_indices(flags, 2, 2)
    assert [len(r) for r in per_rank] == [6, 6]
    counts = Counter(sum(per_rank, []))
    assert set(counts) == set(range(9)) and sum(counts.values()) == 12


def test_deterministic_for_seed_and_epoch():
    flags = np.random.default_rng(0).random(50) < 0.5
    assert rank_indices(flags, 2, 2, seed=3, epoch=1) == rank_indices(flags, 2, 2, seed=3, epoch=1)
    assert rank_indices(flags, 2, 2, seed=3, epoch=1) != rank_indices(flags, 2, 2, seed=3, epoch=2)
    assert rank_indices(flags, 2, 2, seed=3, epoch=1) != rank_indices(flags, 2, 2, seed=4, epoch=1)


def test_shard_sampler_splits_without_padding():
    shards = [list(ShardSampler(10, 3, r)) for r in range(3)]
    assert shards == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


class NoiseDataset(Dataset):
    """Returns numpy's and torch's next random numbers, to see how workers are seeded."""

    def __len__(self):
        return 8

    def aspect_flags(self):
        return np.zeros(8, dtype=bool)

    def __getitem__(self, index):
        return index, float(np.random.rand()), float(torch.rand(()))


def draws(seed):
    loader = build_dataloader(
        NoiseDataset(), 2, train=True, num_workers=2, seed=seed, collate_fn=list
    )
    return [item for batch in loader for item in batch]


def test_workers_are_seeded_from_the_loader_seed():
    first, again, other = draws(0), draws(0), draws(1)
    assert first == again
    assert [x[1:] for x in first] != [x[1:] for x in other]
    assert len({x[1] for x in first}) == 8  # numpy is not seeded alike in the two workers


def test_dataloader_over_the_generated_set(tiny_set):
    dataset = mini_dataset(tiny_set, "train", transforms=inference_transforms((128, 96)))
    loader = build_dataloader(dataset, 2, train=True, num_workers=0)
    loader.sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == -(-len(dataset) // 2)
    for images, targets in batches:
        assert images.shape == (2, 3, 96, 96) and len(targets) == 2
    image_ids = {t["image_id"] for _, targets in batches for t in targets}
    assert image_ids == {r.image_id for r in dataset.records}
