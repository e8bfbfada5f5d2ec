"""The linear probe (regbench.probing.linear): on separable features it beats chance and reaches scikit-learn's
LogisticRegression with the same objective (C = 1 / (l2 * n), on the same standardized features), weights and
accuracy alike; features of k runs are concatenated in run order."""
from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from regbench.probing.linear import concatenated, fit_probe

L2 = 1e-2


def blobs(n_per_class: int, num_classes: int, dim: int, spread: float, seed: int):
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(0)) * 3  # shared by every sample
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    features = centres[labels] + spread * torch.randn(len(labels), dim, generator=gen)
    return features * torch.linspace(0.1, 10, dim) + 5, labels  # uneven scales and an offset: standardized away


def test_the_probe_separates_blobs_far_above_chance():
    train_x, train_y = blobs(60, 4, 6, 0.5, seed=0)
    test_x, test_y = blobs(60, 4, 6, 0.5, seed=1)
    probe = fit_probe(train_x, train_y, 4, L2, max_iter=500)
    assert probe.accuracy(test_x, test_y) > 0.95 > 0.25


def test_the_probe_matches_scikit_learns_logistic_regression_with_the_same_objective():
    train_x, train_y = blobs(50, 3, 5, 3.0, seed=2)  # overlapping: the penalty matters
    test_x, test_y = blobs(50, 3, 5, 3.0, seed=3)
    probe = fit_probe(train_x, train_y, 3, L2, max_iter=1000)
    scaler = StandardScaler().fit(train_x.double().numpy())
    reference = LogisticRegression(C=1 / (L2 * len(train_y)), tol=1e-10, max_iter=10_000).fit(
        scaler.transform(train_x.double().numpy()), train_y.numpy())
    assert torch.allclose(probe.weight, torch.from_numpy(reference.coef_), atol=1e-4)
    assert torch.allclose(probe.bias, torch.from_numpy(reference.intercept_), atol=1e-4)
    expected = reference.score(scaler.transform(test_x.double().numpy()), test_y.numpy())
    assert probe.accuracy(test_x, test_y) == pytest.approx(expected, abs=1 / len(test_y))
    assert 0.5 < expected < 1  # a case where the fit could disagree


def test_a_one_dimensional_two_class_case_solved_by_hand():
    # Standardized x = -1, +1 (one sample each, labels 0, 1). By symmetry the bias is 0 and the two logits are +-w/2
    # for weights (-w/2, +w/2); the mean cross-entropy log(1 + exp(-w)) plus l2/2 * w^2/2 is stationary where
    # 1 / (1 + exp(w)) = l2 * w / 2: w = 1.5 solves it for l2 = 4 / (3 * (1 + e^1.5)).
    l2 = 4 / (3 * (1 + torch.e ** 1.5))
    probe = fit_probe(torch.tensor([[3.0], [7.0]]), torch.tensor([0, 1]), 2, l2, max_iter=200)
    assert probe.weight.flatten().tolist() == pytest.approx([-0.75, 0.75], abs=1e-6)
    assert probe.bias.tolist() == pytest.approx([0, 0], abs=1e-6)


def test_a_constant_feature_is_harmless():
    train_x, train_y = blobs(30, 2, 3, 0.5, seed=3)
    train_x[:, 1] = 4.0
    probe = fit_probe(train_x, train_y, 2, L2, max_iter=200)
    assert torch.isfinite(probe.weight).all() and probe.accuracy(train_x, train_y) > 0.9


def test_features_of_k_runs_are_concatenated_in_run_order():
    runs = [torch.full((5, width), float(i)) for i, width in enumerate((3, 4, 2))]
    assert concatenated(runs, 1).shape == (5, 3)
    two = concatenated(runs, 2)
    assert two.shape == (5, 7) and two[:, :3].eq(0).all() and two[:, 3:].eq(1).all()
    assert concatenated(runs, 3).shape == (5, 9) and concatenated(runs, 3)[:, 7:].eq(2).all()
