"""Nested dropout: exactly the channels >= k are zeroed, and k follows the paper's distribution."""
import math
from collections import Counter

import torch
import pytest

from regbench.backbones import build_backbone
from regbench.regularizers import create_regularizer
from regbench.regularizers.nested_dropout import NestedDropoutLayer, keep_first


def test_keep_first_zeroes_exactly_the_channels_from_k_on():
    features = torch.arange(1.0, 13.0).reshape(2, 6)
    for k in range(1, 7):
        out = keep_first(features, k)
        assert torch.equal(out[:, :k], features[:, :k])  # unscaled
        assert torch.equal(out[:, k:], torch.zeros(2, 6 - k))


def test_training_keeps_one_drawn_prefix_per_batch():
    layer = NestedDropoutLayer(16, mu=0.0, sigma=6.0, seed=1).train()
    features = torch.rand(8, 16) + 1.0
    for _ in range(20):
        nonzero = layer(features) != 0
        k = int(nonzero[0].sum())
        assert torch.equal(nonzero, (torch.arange(16) < k).expand(8, 16))  # same k for every sample
    layer.eval()
    assert torch.equal(layer(features), features)


def test_k_follows_the_official_gaussian_distribution():
    d, mu, sigma, draws = 12, 0.0, 4.0, 20000
    layer = NestedDropoutLayer(d, mu=mu, sigma=sigma, seed=0)
    counts = Counter(layer.draw_keep() for _ in range(draws))
    weights = [math.exp(-(((k - mu) / sigma) ** 2)) for k in range(1, d + 1)]  # GaussianDist(mu, std, N)
    for k, w in zip(range(1, d + 1), weights):
        p = w / sum(weights)
        assert abs(counts[k] / draws - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-4, k


def test_test_report_gives_accuracy_by_width_and_full_width_equals_plain_eval():
    torch.manual_seed(0)
    reg = create_regularizer("nested_dropout", mu=0.0, sigma=10.0)
    model = reg.wrap_model(build_backbone({"name": "mlp", "hidden": [8]}, {"name": "none"}, (1, 2, 2), 3))
    images, labels = torch.randn(30, 1, 2, 2), torch.randint(0, 3, (30,))
    batches = [(images[:16], labels[:16], None), (images[16:], labels[16:], None)]
    report = reg.test_report(model, batches, batches)["nested_dropout_acc_by_k"]
    assert list(report) == ["1", "2", "4", "8"]
    model.eval()
    with torch.no_grad():
        full = (model(images).argmax(-1) == labels).float().mean().item()
        features = model.forward_features(images)
        k2 = (model.head[1](keep_first(features, 2)).argmax(-1) == labels).float().mean().item()
    assert report["8"] == pytest.approx(full) and report["2"] == pytest.approx(k2)
    assert model.head[0].eval_keep is None  # the report leaves the network as it was


class PredictByWidth(torch.nn.Module):
    """A head that predicts class `predict[k]` when k leading features are kept (the rest are zero)."""

    def __init__(self, predict: list[int]):
        super().__init__()
        self.predict = predict

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        kept = int((features[0] != 0).sum())
        return torch.nn.functional.one_hot(torch.full((features.shape[0],), self.predict[kept]), 3).float()


class ScriptedWidths(torch.nn.Module):
    """A network whose prediction depends only on how many of its D = len(predict) - 1 features are kept."""

    def __init__(self, predict: list[int]):
        super().__init__()
        self.num_features = len(predict) - 1
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the network a device
        self.head = torch.nn.Sequential(NestedDropoutLayer(self.num_features, 0.0, 1.0, seed=0),
                                        PredictByWidth(predict))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], self.num_features)


def test_k_is_the_best_validation_width_ties_to_the_smaller_as_the_official_code():
    # Validation labels are all 2: widths 3 and 5 predict 2 (a tie), so K = 3; the test labels are all 1, which
    # only widths 1 and 3 predict.
    net = ScriptedWidths([0, 1, 0, 2, 0, 2, 0, 0])
    val = [(torch.zeros(4, 1), torch.full((4,), 2), None)]
    test = [(torch.zeros(6, 1), torch.full((6,), 1), None)]
    report = create_regularizer("nested_dropout", mu=0.0, sigma=1.0).test_report(net, test, val)
    assert report["nested_dropout_k"] == 3
    assert report["nested_dropout_val_acc_at_k"] == 1.0
    assert report["nested_dropout_test_acc_at_k"] == 0.0  # width 3 predicts 2, the test labels are 1
    assert report["nested_dropout_acc_by_k"] == {"1": 1.0, "2": 0.0, "4": 0.0, "7": 0.0}
