"""LAME's correction (Boudiaf et al., CVPR 2022) on hand cases: no affinity returns the model's outputs, the kNN
graph marks nearest others, two identical neighbours' outputs are pulled together, the closed-form fixed point
holds at convergence, and on a class-sorted batch of one cluster LAME fixes the minority of wrong outputs. The
streams' orders: i.i.d. is a seeded shuffle, class-ordered is sorted by label."""
from __future__ import annotations

import torch

from regbench.evaluation.lame import stream_order
from regbench.evaluation.lame_math import knn_affinity, lame, laplacian_assignments


def test_without_affinity_the_outputs_are_the_models():
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]], dtype=torch.float64)
    out = laplacian_assignments(probabilities, torch.zeros(2, 2, dtype=torch.float64), max_steps=10)
    assert torch.allclose(out, probabilities, atol=1e-8)


def test_knn_affinity_marks_each_points_nearest_others():
    features = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert torch.equal(knn_affinity(features, 1), torch.tensor(
        [[0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.float32))
    assert knn_affinity(features, 10).sum().item() == 12  # every other point, never itself


def test_two_identical_neighbours_are_pulled_together():
    probabilities = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = lame(probabilities, features, knn=1, max_steps=100)
    assert (out[0] - out[1]).abs().sum() < (probabilities[0] - probabilities[1]).abs().sum()
    assert out[1].argmax() == 0  # the confident neighbour wins the unsure one over


def test_the_result_is_the_closed_form_fixed_point():
    gen = torch.Generator().manual_seed(0)
    probabilities = torch.rand(12, 4, generator=gen, dtype=torch.float64).softmax(dim=1)
    affinity = knn_affinity(torch.randn(12, 5, generator=gen, dtype=torch.float64), 3)
    z = laplacian_assignments(probabilities, affinity, max_steps=1000)
    fixed = probabilities * torch.exp(affinity @ z)
    assert torch.allclose(z, fixed / fixed.sum(dim=1, keepdim=True), atol=1e-4)


def test_lame_fixes_the_wrong_minority_of_a_one_class_batch():
    """A class-ordered batch: 20 images of class 0 whose features cluster, 6 of them misclassified unconfidently."""
    gen = torch.Generator().manual_seed(0)
    features = torch.tensor([1.0, 0.0, 0.0]) + 0.05 * torch.randn(20, 3, generator=gen)
    probabilities = torch.tensor([[0.7, 0.2, 0.1]] * 14 + [[0.35, 0.45, 0.2]] * 6, dtype=torch.float64)
    corrected = lame(probabilities, features.double(), knn=5, max_steps=100)
    assert (probabilities.argmax(dim=1) == 0).sum() == 14
    assert (corrected.argmax(dim=1) == 0).all()


def test_the_stream_orders():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1])
    iid = stream_order(labels, "iid", seed=3)
    assert sorted(iid.tolist()) == list(range(8)) and torch.equal(iid, stream_order(labels, "iid", seed=3))
    ordered = stream_order(labels, "class_ordered", seed=3)
    assert labels[ordered].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert sorted(ordered.tolist()) == list(range(8))
