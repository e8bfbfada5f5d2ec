"""LAME's correction (Boudiaf et al., CVPR 2022) on hand cases: no affinity returns the model's outputs, the kNN
graph marks nearest others, two identical neighbours' outputs are pulled together, the closed-form fixed point
holds at convergence, and on a class-sorted batch of one cluster LAME fixes the minority of wrong outputs. The
streams' orders: i.i.d. is a seeded shuffle, class-ordered is sorted by label. Through the evaluation itself, on a
synthetic stream of three clusters and a nearest-centre model, LAME gains on the class-ordered stream only."""
from __future__ import annotations

import torch

from regbench.evaluation.lame import LAMEStreams, stream_order
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


class NearestCentre(torch.nn.Module):
    """A soft nearest-centre classifier of 2-D points (1x1 images with 2 channels), its features the points."""

    def __init__(self, centres: torch.Tensor):
        super().__init__()
        self.centres = centres

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return -0.5 * torch.cdist(self.forward_features(images), self.centres) ** 2


class FakeModule:
    def __init__(self, network: torch.nn.Module):
        self.network, self.model, self.device = network, network, torch.device("cpu")

    def eval_network(self) -> torch.nn.Module:
        return self.network

    @staticmethod
    def in_memory_format(images: torch.Tensor) -> torch.Tensor:
        return images


class FakeDataModule:
    """Pixels in [0, 1] around three centres, normalized as (pixels - 0.5) / 0.25, so the points lie around the
    unit circle."""
    batch_size = 32
    mean, std = torch.full((1, 2, 1, 1), 0.5), torch.full((1, 2, 1, 1), 0.25)

    def __init__(self, n_per_class: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        angles = torch.tensor([0.0, 2.0944, 4.1888])
        self.centres = torch.stack([angles.cos(), angles.sin()], dim=1)
        labels = torch.arange(3).repeat_interleave(n_per_class)
        points = self.centres[labels] + 0.55 * torch.randn(len(labels), 2, generator=gen)
        pixels = (points * 0.25 + 0.5).clamp(0, 1)
        self.splits = {"test": ((pixels * 255).round().to(torch.uint8).view(-1, 2, 1, 1), labels, None)}


def test_lame_beats_the_unadapted_model_on_the_class_ordered_stream_only():
    datamodule = FakeDataModule(n_per_class=200, seed=0)
    streams = LAMEStreams(knn=5, max_steps=100, batch_size=32, corruption=None, severity=5,
                          data={"name": "synthetic"}, seed=0)
    metrics = streams.evaluate(FakeModule(NearestCentre(datamodule.centres)), datamodule, "test")
    unadapted = metrics["lame.iid.test_acc_unadapted"]
    assert 0.6 < unadapted < 0.95 and metrics["lame.class_ordered.test_acc_unadapted"] == unadapted
    assert metrics["lame.class_ordered.test_acc"] > unadapted + 0.05
    assert metrics["lame.class_ordered.test_acc"] > metrics["lame.iid.test_acc"]
