"""Data Diet's scores against hand computations and a per-sample autograd loop, and the pruned subsets on a hand
case (Paul et al., 2021)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.data.prune import kept_indices
from regbench.scoring.scores import el2n, el2n_in_batches, grand
from regbench.scores_file import kept_count


def test_el2n_is_the_norm_of_softmax_minus_onehot_by_hand():
    # logits (0, ln 3): softmax (1/4, 3/4). Label 1: error (1/4, -1/4), norm sqrt(2)/4; label 0: (-3/4, 3/4).
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    scores = el2n(logits, torch.tensor([1, 0]))
    assert scores.tolist() == pytest.approx([math.sqrt(2) / 4, 3 * math.sqrt(2) / 4])
    # Uniform over 3 classes: error (2/3, -1/3, -1/3) up to order, norm sqrt(6)/3.
    assert el2n(torch.zeros(1, 3), torch.tensor([2])).item() == pytest.approx(math.sqrt(6) / 3)


def test_el2n_in_batches_matches_one_pass():
    torch.manual_seed(0)
    model = nn.Linear(5, 4).eval()
    images, labels = torch.randn(11, 5), torch.randint(0, 4, (11,))
    assert torch.allclose(el2n_in_batches(model, images, labels, batch_size=3), el2n(model(images), labels))


def per_sample_loop(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    norms = []
    for image, label in zip(images, labels):
        model.zero_grad()
        F.cross_entropy(model(image.unsqueeze(0)), label.unsqueeze(0)).backward()
        norms.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters() if p.requires_grad)))
    return norms


def test_grand_matches_a_per_sample_autograd_loop_over_every_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 5))
    model(torch.randn(16, 1, 4, 4))  # non-trivial running statistics
    model.eval()
    images, labels = torch.randn(7, 1, 4, 4), torch.randint(0, 5, (7,))
    expected = per_sample_loop(model, images, labels)
    assert grand(model, images, labels, chunk=3).tolist() == pytest.approx(expected, rel=1e-5)


def test_grand_leaves_frozen_weights_out():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    model[0].weight.requires_grad_(False)
    images, labels = torch.randn(5, 4), torch.randint(0, 3, (5,))
    assert grand(model, images, labels).tolist() == pytest.approx(per_sample_loop(model, images, labels), rel=1e-5)


def test_grand_of_a_linear_softmax_model_by_hand():
    # For logits W x + b, dL/dW = (p - y) x^T and dL/db = p - y: the norm is ||p - y|| * sqrt(||x||^2 + 1),
    # EL2N times a factor of the input (the paper's link between the two scores).
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    image, label = torch.tensor([[3.0, 4.0]]), torch.tensor([1])
    expected = math.sqrt(2) / 4 * math.sqrt(25 + 1)
    assert grand(model, image, label).item() == pytest.approx(expected)


SCORES = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6, 0.8])


@pytest.mark.parametrize("keep,expected", [
    ("hard", [0, 2, 4, 6, 8, 9, 7]),  # the 7 highest: 0.9 (2, 4), 0.8, 0.7, 0.6, 0.5, 0.4
    ("easy", [1, 5, 3, 7, 0, 8, 6]),  # the 7 lowest: 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7
])
def test_pruning_keeps_the_highest_or_lowest_scores(keep, expected):
    kept = kept_indices(SCORES, 0.3, keep, torch.Generator().manual_seed(0))
    assert kept.tolist() == sorted(expected)


def test_ties_go_to_the_earlier_position():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])
    assert kept_indices(scores, 0.6, "hard", torch.Generator()).tolist() == [1, 2]
    assert kept_indices(scores, 0.6, "easy", torch.Generator()).tolist() == [0, 4]


def test_random_keeps_a_seeded_subset_of_the_same_size():
    draws = [kept_indices(SCORES, 0.3, "random", torch.Generator().manual_seed(seed)).tolist() for seed in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2]
    assert all(len(d) == 7 and len(set(d)) == 7 and d == sorted(d) for d in draws)
    assert draws[0] == sorted(torch.randperm(10, generator=torch.Generator().manual_seed(0))[:7].tolist())


@pytest.mark.parametrize("total,fraction,kept", [(10, 0.3, 7), (1295, 0.3, 907), (10, 0.0, 10), (3, 0.5, 2)])
def test_the_pruned_count_is_rounded_down(total, fraction, kept):
    assert kept_count(total, fraction) == kept
