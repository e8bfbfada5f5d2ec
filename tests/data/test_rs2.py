"""RS2 (Okanovic et al., ICLR 2024): the rounds' subsets without and with replacement, their size in whole batches,
the epochs and schedule they give, and resumption inside a round."""
import math

import pytest
import torch

from regbench.data.batches import TensorBatches
from regbench.data.rs2 import RepeatedRandomSubsets
from regbench.runshape import RunShape, rs2_round_images


def subsets(n: int, fraction: float, batch_size: int, replacement: bool = False, seed: int = 0, world_size: int = 1):
    return RepeatedRandomSubsets.for_config({"fraction": fraction, "replacement": replacement}, n, batch_size,
                                            world_size, seed)


@pytest.mark.parametrize("n, fraction, batch_size, world_size, expected", [
    (1000, 0.1, 10, 1, 100),   # 100 images, 10 whole batches
    (1295, 0.2, 64, 1, 256),   # round(259) images cut to 4 batches of 64
    (1000, 0.1, 10, 2, 100),   # 50 per rank, 5 batches each
    (1000, 0.1, 32, 2, 64),    # 50 per rank: one batch of 32 each
    (1295, 1.0, 64, 1, 1280),  # the whole split, as the full sampler's epoch
    (1295, 0.01, 64, 1, 0),    # 13 images: not one batch
])
def test_a_round_is_the_fraction_cut_to_whole_batches_on_every_rank(n, fraction, batch_size, world_size, expected):
    assert rs2_round_images(n, fraction, batch_size, world_size) == expected


def test_without_replacement_ceil_one_over_fraction_rounds_see_every_index_exactly_once():
    rounds = subsets(1000, 0.1, 10)
    assert rounds.rounds_per_pass == math.ceil(1 / 0.1) == 10
    drawn = torch.cat([rounds.indices(epoch) for epoch in range(10)])
    assert sorted(drawn.tolist()) == list(range(1000))
    second_pass = torch.cat([rounds.indices(epoch) for epoch in range(10, 20)])
    assert sorted(second_pass.tolist()) == list(range(1000)) and not torch.equal(second_pass, drawn)


def test_the_last_round_of_a_pass_is_topped_up_with_the_pass_s_first_images():
    rounds = subsets(1295, 0.2, 64)  # rounds of 256: 5 full ones leave 15 images for the sixth
    assert rounds.round_images == 256 and rounds.rounds_per_pass == 6
    pass_rounds = [rounds.indices(epoch) for epoch in range(6)]
    stream = torch.cat(pass_rounds)
    assert sorted(stream[:1295].tolist()) == list(range(1295))  # every image once before any repeats
    assert torch.equal(stream[1295:], stream[:256 - 15])  # the top-up repeats the pass's first images
    assert all(len(set(r.tolist())) == 256 for r in pass_rounds)  # never an image twice within a round
    assert rounds.distinct_images(6) == 1295 and rounds.distinct_images(5) == 1280


def test_rounds_are_seeded_and_depend_on_the_epoch_alone():
    a, b, other = subsets(500, 0.2, 10, seed=3), subsets(500, 0.2, 10, seed=3), subsets(500, 0.2, 10, seed=4)
    for epoch in (7, 0, 12, 3):  # any order: a resumed run draws what an uninterrupted one draws
        assert torch.equal(a.indices(epoch), b.indices(epoch))
    assert not torch.equal(a.indices(0), other.indices(0))
    assert not torch.equal(a.indices(0), a.indices(1))


def test_with_replacement_every_round_is_an_independent_uniform_subset():
    n, m, epochs = 500, 50, 2000
    rounds = subsets(n, 0.1, 10, replacement=True)
    drawn = [rounds.indices(epoch) for epoch in range(epochs)]
    assert all(len(set(r.tolist())) == m for r in drawn)
    counts = torch.bincount(torch.cat(drawn), minlength=n).double()
    # Each index is in a round with probability m/n = 0.1: Binomial(2000, 0.1), mean 200 and sd 13.4.
    assert counts.mean() == pytest.approx(epochs * m / n)
    assert counts.std() == pytest.approx(math.sqrt(epochs * 0.1 * 0.9), rel=0.15)
    assert ((counts - 200).abs() < 6 * 13.42).all()
    # Independent rounds overlap in m^2/n = 5 images on average (disjoint without replacement).
    overlaps = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(drawn, drawn[1:])]
    assert sum(overlaps) / len(overlaps) == pytest.approx(m * m / n, rel=0.1)
    assert rounds.distinct_images(10) < n  # ten rounds of a tenth repeat images
    without = subsets(n, 0.1, 10)
    assert all(not set(without.indices(e).tolist()) & set(without.indices(e + 1).tolist()) for e in range(9))


def test_an_epoch_yields_its_round_in_whole_batches_and_resumes_inside_it():
    n = 300
    labels = torch.arange(n) % 10
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    rounds = subsets(n, 0.25, 16)  # round(75) cut to 4 batches of 16
    loader = TensorBatches(images, labels, 16, shuffle=True, seed=0, drop_last=True, subsets=rounds)
    assert len(loader) == 4
    loader.set_epoch(2)
    full = [index for _, _, index in loader]
    assert torch.equal(torch.cat(full), rounds.indices(2))
    resumed = TensorBatches(images, labels, 16, shuffle=True, seed=0, drop_last=True, subsets=rounds)
    resumed.load_state_dict({"epoch": 2, "position": 1})
    assert [index.tolist() for _, _, index in resumed] == [index.tolist() for index in full[1:]]


def test_the_schedule_spans_the_rounds_steps():
    shape = RunShape((1, 8, 8), 1295, 64, 1, 3, epoch_images=rs2_round_images(1295, 0.2, 64, 1))
    assert shape.steps_per_epoch == 4 and shape.total_steps == 12
    assert RunShape((1, 8, 8), 1295, 64, 1, 3).total_steps == 60  # the full sampler: 20 steps an epoch
