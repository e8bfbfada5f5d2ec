"""Crafted-shift validation (Efthymiadis, Tolias & Chum, WACV 2025): the k-fold split over shift types, the seeded
validation sets, the training shifts, the crafted accuracy on hand-made predictions and the epoch it selects."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from data_configs import dataset_config

from regbench.data.module import build_datamodule
from regbench.data.batches import BatchAugment, TensorBatches
from regbench.data.crafted_val import CraftedShifts, TrainingShift, fold_groups
from regbench.corruptions.ops import CORRUPTION_OPS, apply_corruption, corrupt
from regbench.run.module import ClassifierModule
from regbench.run.selection import selected_epoch

TEN = [f"shift{i}" for i in range(10)]


def crafted(shifts: list[str], folds: int, fold: int, severity: int = 3, seed: int = 0) -> CraftedShifts:
    return CraftedShifts.for_config({"shifts": shifts, "folds": folds, "fold": fold, "severity": severity,
                                     "seed": seed})


@pytest.mark.parametrize("n, folds", [(10, 2), (10, 3), (7, 7), (5, 1), (8, 3)])
def test_the_folds_partition_the_shift_types(n, folds):
    groups = fold_groups(TEN[:n], folds)
    assert len(groups) == folds and all(groups)
    assert [name for group in groups for name in group] == TEN[:n]  # every type in exactly one fold, in order
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_two_folds_of_ten_are_the_paper_s_first_and_second_half():
    assert fold_groups(TEN, 2) == [TEN[:5], TEN[5:]]


@pytest.mark.parametrize("folds", [2, 3, 4])
def test_each_fold_validates_on_types_it_never_trains_on(folds):
    shifts = list(CORRUPTION_OPS)
    runs = [crafted(shifts, folds, fold) for fold in range(folds)]
    for run in runs:
        assert not set(run.validated) & set(run.trained)
        assert sorted(run.validated + run.trained) == sorted(shifts)
    # Over the k runs every type validates exactly once.
    assert sorted(name for run in runs for name in run.validated) == sorted(shifts)


def test_one_fold_validates_on_every_type_and_trains_unshifted():
    run = crafted(["contrast", "pixelate"], 1, 0)
    assert run.validated == ("contrast", "pixelate") and run.trained == ()
    assert run.training_shift(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)) is None
    assert CraftedShifts.for_config({"shifts": [], "folds": 1, "fold": 0, "severity": 3, "seed": 0}) is None


def test_the_validation_sets_are_seeded():
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    first = crafted(["gaussian_noise", "impulse_noise"], 1, 0, severity=5, seed=4).validation_pixels(images)
    again = crafted(["gaussian_noise", "impulse_noise"], 1, 0, severity=5, seed=4).validation_pixels(images)
    other = crafted(["gaussian_noise", "impulse_noise"], 1, 0, severity=5, seed=5).validation_pixels(images)
    for name in ("gaussian_noise", "impulse_noise"):
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], other[name])
        assert torch.equal(first[name], corrupt(images, name, 5, 4))
        assert not torch.equal(first[name], images.float() / 255)


def test_a_training_image_is_unshifted_or_shifted_by_one_training_type_with_equal_odds():
    mean, std = torch.tensor([0.4]).view(1, 1, 1, 1), torch.tensor([0.2]).view(1, 1, 1, 1)
    pixels = torch.rand(2000, 1, 8, 8)
    images = (pixels - mean) / std
    shift = TrainingShift(("contrast", "pixelate"), 5, mean, std)
    shifted = shift(images, torch.Generator().manual_seed(0))
    # contrast and pixelate draw nothing, so each image's candidates are known exactly.
    candidates = torch.stack([images, *[(apply_corruption(pixels, name, 5, torch.Generator()) - mean) / std
                                        for name in ("contrast", "pixelate")]])
    matches = (shifted.unsqueeze(0) - candidates).abs().amax(dim=(2, 3, 4)) < 1e-5
    assert bool(matches.any(dim=0).all())  # every image is one of its three candidates
    counts = matches.float().sum(dim=1) / len(images)
    assert counts.tolist() == pytest.approx([1 / 3] * 3, abs=0.04)
    assert torch.equal(shifted, shift(images, torch.Generator().manual_seed(0)))  # seeded


def test_the_datamodule_shifts_training_batches_and_crafts_its_validation_sets():
    cfg = dataset_config("digits")
    cfg["crafted_val"].update(shifts=["gaussian_noise", "contrast", "gaussian_blur"], folds=3, fold=1)
    datamodule = build_datamodule(cfg, seed=0)
    datamodule.setup()
    assert isinstance(datamodule.augment.shift, TrainingShift)
    assert datamodule.augment.shift.names == ("gaussian_noise", "gaussian_blur")
    assert list(datamodule.crafted_val_batches) == ["contrast"]
    val_images, val_labels, _ = datamodule.splits["val"]
    batches = datamodule.crafted_val_batches["contrast"]
    assert torch.equal(batches.labels, val_labels)
    expected = (corrupt(val_images, "contrast", 3, 0) - datamodule.mean) / datamodule.std
    assert torch.allclose(batches.images, expected)


class ReadsTheAnswer(nn.Module):
    """Predicts the class written in each image's first pixel."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(images[:, 0, 0, 0].long(), 3).float()


def answers(predicted: list[int], labels: list[int]) -> TensorBatches:
    images = torch.tensor(predicted, dtype=torch.float).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return TensorBatches(images, torch.tensor(labels), batch_size=3, shuffle=False, shard=False)


def test_the_crafted_accuracy_is_the_mean_over_the_validated_types():
    module = ClassifierModule(ReadsTheAnswer(), [], 3, {"name": "sgd", "lr": 0.1, "weight_decay": 0.0,
                                                        "momentum": 0.0, "nesterov": False},
                              {"name": "constant", "warmup_epochs": 0})
    crafted_sets = {"contrast": answers([0, 1, 2, 2], [0, 1, 2, 0]),  # 3 of 4 right
                    "pixelate": answers([1, 1, 1, 1, 0], [1, 0, 0, 0, 1])}  # 1 of 5 right
    assert module.crafted_accuracy(crafted_sets).item() == pytest.approx((3 / 4 + 1 / 5) / 2)


def test_each_selection_picks_the_first_epoch_of_its_best_accuracy():
    rows = [{"val_acc": 0.50, "val_crafted_acc": 0.30}, {"val_acc": 0.80, "val_crafted_acc": 0.35},
            {"val_acc": 0.70, "val_crafted_acc": 0.45}, {"val_acc": 0.80, "val_crafted_acc": 0.45}]
    assert selected_epoch(rows, "val_acc") == 1
    assert selected_epoch(rows, "val_crafted_acc") == 2


def test_a_resumed_epoch_shifts_its_remaining_batches_as_the_uninterrupted_one():
    mean, std = torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.25]).view(1, 1, 1, 1)
    augment = BatchAugment(0, False, shift=TrainingShift(("gaussian_noise", "impulse_noise"), 3, mean, std))
    images, labels = torch.randn(40, 1, 8, 8), torch.arange(40) % 3

    def batches() -> TensorBatches:
        return TensorBatches(images, labels, 8, shuffle=True, seed=3, augment=augment, image_size=(8, 8),
                             drop_last=True)

    whole = batches()
    whole.set_epoch(2)
    uninterrupted = [batch for batch, _, _ in whole]
    resumed = batches()
    resumed.load_state_dict({"epoch": 2, "position": 3})
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted[3:], [batch for batch, _, _ in resumed], strict=True))
