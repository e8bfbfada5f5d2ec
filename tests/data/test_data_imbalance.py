"""Long-tailed profiles, seeded per-class selection, and the upsample / upweight rebalancing."""
import math

import pytest
import torch
import torch.nn as nn
from data_configs import label_shift

from regbench.data.base import ImageData
from regbench.data.batches import TensorBatches
from regbench.data.class_counts import exponential_counts, step_counts
from regbench.data.imbalance import UpsampleWeights, class_probabilities, upweight_class_weights
from regbench.data.module import ImageDataModule
from regbench.run.module import ClassifierModule


def test_exponential_profile_is_cifar10_lt():
    # CIFAR-10-LT with rho=100 (Cao et al., 2019): the published per-class training counts.
    assert exponential_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert exponential_counts(37, 7, 3.5) == [math.floor(37 * 3.5 ** (-c / 6)) for c in range(7)]


def test_step_profile():
    assert step_counts(5000, 10, 10, 0.5) == [5000] * 5 + [500] * 5
    assert step_counts(100, 4, 3, 0.25) == [100, 100, 100, 33]


def image_data(per_class: list[int]) -> ImageData:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    classes = [str(c) for c in range(len(per_class))]
    return ImageData(images, labels, images[:10], labels[:10], classes, (0.5,), (0.25,), hflip_ok=False)


def long_tail_module(seed: int, kind: str = "exponential", factor: float = 10.0, **balance) -> ImageDataModule:
    sections = label_shift(imbalance={"type": kind, "factor": factor, "minority_fraction": 0.5, "seed": seed},
                           balance=balance)
    return ImageDataModule(image_data([120, 110, 100, 130]), batch_size=8, val_fraction=0.0, split_seed=0, seed=0,
                           crop_padding=0, hflip=False, dataset="synthetic", **sections)


def test_long_tail_training_split_follows_the_profile_and_the_seed():
    first, again, other = long_tail_module(1), long_tail_module(1), long_tail_module(2)
    counts = [math.floor(100 * 10 ** (-c / 3)) for c in range(4)]  # n_max = the smallest class (100)
    assert first.imbalance_report["train_counts"] == counts
    assert torch.bincount(first.splits["train"][1]).tolist() == counts
    assert torch.equal(first.splits["train"][2], again.splits["train"][2])
    assert not torch.equal(first.splits["train"][2], other.splits["train"][2])
    assert long_tail_module(0, "step", 4.0).imbalance_report["train_counts"] == [100, 100, 25, 25]
    assert first.split_size("test") == 10  # the test set is never subsampled


def test_class_probabilities_follow_the_temperature():
    counts = torch.tensor([400, 100, 25])
    assert torch.allclose(class_probabilities(counts, 1.0), counts.double() / 525, atol=1e-12, rtol=0)
    assert torch.allclose(class_probabilities(counts, 2.0), torch.tensor([20.0, 10, 5], dtype=torch.float64) / 35)
    assert torch.allclose(class_probabilities(counts, float("inf")), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_upsampling_draws_classes_with_the_target_probabilities():
    labels = torch.tensor([0] * 400 + [1] * 100 + [2] * 25)
    weights = UpsampleWeights.for_labels(labels, 3, {"tau": 2.0, "tau_end": None, "switch_epoch": None})
    batches = TensorBatches(torch.zeros(len(labels), 1), labels, 25, shuffle=True, sample_weights=weights)
    assert len(batches) == len(labels) // 25  # same steps per epoch as without upsampling
    frequency = drawn_class_frequency(batches, range(40))
    assert torch.allclose(frequency, torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=torch.float64), atol=0.01)


def drawn_class_frequency(batches: TensorBatches, epochs) -> torch.Tensor:
    drawn = []
    for epoch in epochs:
        batches.set_epoch(epoch)
        drawn += [y for _, y, _ in batches]
    return torch.bincount(torch.cat(drawn), minlength=3).double() / len(torch.cat(drawn))


COOLDOWN = {"tau": float("inf"), "tau_end": 2.0, "switch_epoch": 3}


def class_totals(weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.zeros(3, dtype=torch.float64).index_add_(0, labels, weights.double())


def test_cooldown_lowers_the_temperature_from_the_switch_epoch_on():
    labels = torch.tensor([0] * 400 + [1] * 100 + [2] * 25)
    weights = UpsampleWeights.for_labels(labels, 3, COOLDOWN)
    uniform, cooled = torch.full((3,), 1 / 3, dtype=torch.float64), torch.tensor([4 / 7, 2 / 7, 1 / 7]).double()
    for epoch in range(6):  # epochs 0-2 at tau = inf (uniform classes), 3 on at tau = 2 (p_c ~ sqrt(n_c))
        assert torch.allclose(class_totals(weights.at(epoch), labels), uniform if epoch < 3 else cooled)
    batches = TensorBatches(torch.zeros(len(labels), 1), labels, 25, shuffle=True, sample_weights=weights)
    assert torch.allclose(drawn_class_frequency(batches, range(3)), uniform, atol=0.02)
    assert torch.allclose(drawn_class_frequency(batches, range(3, 43)), cooled, atol=0.01)


def test_a_run_resumed_after_the_switch_draws_the_cooled_batches():
    labels = torch.tensor([0] * 400 + [1] * 100 + [2] * 25)
    weights = UpsampleWeights.for_labels(labels, 3, COOLDOWN)
    uninterrupted = TensorBatches(torch.zeros(len(labels), 1), labels, 25, shuffle=True, seed=5,
                                  sample_weights=weights)
    uninterrupted.set_epoch(3)
    expected = [y for _, y, _ in uninterrupted]
    interrupted = TensorBatches(torch.zeros(len(labels), 1), labels, 25, shuffle=True, seed=5,
                                sample_weights=weights)
    interrupted.set_epoch(3)
    first = iter(interrupted)
    seen = [next(first)[1] for _ in range(4)]
    resumed = TensorBatches(torch.zeros(len(labels), 1), labels, 25, shuffle=True, seed=5, sample_weights=weights)
    resumed.load_state_dict(interrupted.state_dict())  # what a mid-epoch checkpoint holds
    rest = [y for _, y, _ in resumed]
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, expected)) and len(seen + rest) == len(expected)
    before_switch = TensorBatches(torch.zeros(len(labels), 1), labels, 25, shuffle=True, seed=5,
                                  sample_weights=UpsampleWeights.for_labels(labels, 3, {**COOLDOWN, "switch_epoch": 4}))
    before_switch.set_epoch(3)
    assert not all(torch.equal(a, b) for a, b in zip([y for _, y, _ in before_switch], expected))


def test_upweight_weights_reach_the_target_distribution():
    labels = torch.tensor([0] * 400 + [1] * 100 + [2] * 25)
    weights = upweight_class_weights(labels, 3, float("inf"))
    # w_c = p_c N / n_c with p uniform: every class carries the same total weight, mean weight 1.
    assert torch.allclose(weights, torch.tensor([525 / 3 / 400, 525 / 3 / 100, 525 / 3 / 25]))
    assert weights[labels].mean().item() == pytest.approx(1.0)


class FixedLogits(nn.Module):
    """A 'model' whose logits are its input; a learnable zero keeps the optimizer happy."""

    def __init__(self):
        super().__init__()
        self.zero = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.zero


def test_training_step_weights_each_sample_by_its_class_and_splits_noisy_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 1, 1])
    class_weights = torch.tensor([0.5, 2.0])
    is_noisy = torch.tensor([False, False, True, True, False])
    module = ClassifierModule(FixedLogits(), [], 2, {"name": "sgd"}, {"name": "constant"},
                              class_weights=class_weights, is_noisy=is_noisy)
    module.log = lambda *args, **kwargs: None  # no Trainer here
    loss = module.training_loss((logits, labels, torch.tensor([0, 1, 2, 3])), 0)
    per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert loss.item() == pytest.approx((per_sample * torch.tensor([0.5, 2.0, 2.0, 2.0])).mean().item())
    stats = module.train_epoch_stats()
    # Sample 2 (noisy) is predicted 0 against label 1, sample 3 (noisy) correct; both clean ones correct.
    assert stats["train_acc_clean"] == 1.0 and stats["train_acc_noisy"] == 0.5
