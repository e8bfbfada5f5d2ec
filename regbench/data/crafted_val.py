"""Crafted-shift validation (Efthymiadis, Tolias & Chum, "Crafting Distribution Shifts for Validation and Training in
Single Source Domain Generalization", WACV 2025): the shift types are cut into k groups (a k-fold split over
augmentation types, not over images); one group crafts the validation set, the validation split shifted once by each
of its types, and the other groups augment training. Validation and training never share a shift type, so the
crafted accuracy estimates accuracy under shifts the model has not trained on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from regbench.corruptions.ops import apply_corruption, corrupt


def fold_groups(shifts: list[str], folds: int) -> list[list[str]]:
    """`shifts` cut into `folds` contiguous groups in their listed order, sizes differing by at most one (the
    paper's two folds are the first and the second half of its ten augmentation categories)."""
    n = len(shifts)
    return [shifts[g * n // folds:(g + 1) * n // folds] for g in range(folds)]


@dataclass(frozen=True)
class CraftedShifts:
    """The shift types of one fold: `validated` craft the validation set, `trained` augment training."""
    validated: tuple[str, ...]
    trained: tuple[str, ...]
    folds: int
    fold: int
    severity: int
    seed: int

    @classmethod
    def for_config(cls, cfg: Mapping[str, Any]) -> CraftedShifts | None:
        """None when data.crafted_val.shifts is empty (plain validation only)."""
        if not cfg["shifts"]:
            return None
        groups = fold_groups(list(cfg["shifts"]), cfg["folds"])
        trained = [name for g, group in enumerate(groups) if g != cfg["fold"] for name in group]
        return cls(tuple(groups[cfg["fold"]]), tuple(trained), cfg["folds"], cfg["fold"], cfg["severity"],
                   cfg["seed"])

    def validation_pixels(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The validation split's uint8 `images` shifted by each validated type, as pixels in [0, 1]: made once, from
        the seed alone, so every epoch (and every run with that seed) is validated on the same images."""
        return {name: corrupt(images, name, self.severity, self.seed) for name in self.validated}

    def training_shift(self, mean: torch.Tensor, std: torch.Tensor) -> TrainingShift | None:
        """The training batches' shift; None when every type validates (one fold): training stays unshifted."""
        return TrainingShift(self.trained, self.severity, mean, std) if self.trained else None

    def report(self) -> dict[str, Any]:
        return {"folds": self.folds, "fold": self.fold, "validated": list(self.validated),
                "trained": list(self.trained), "severity": self.severity}


class TrainingShift:
    """Each training image is drawn unshifted or shifted by one of the training types, with equal odds (the
    paper's loader picks one of the original and the augmented copies uniformly). Works on normalized batches on
    their device; every type is applied to the whole batch and then picked per image, so the draws taken from
    `gen` never depend on the images (a resumed epoch replays them exactly)."""

    def __init__(self, names: tuple[str, ...], severity: int, mean: torch.Tensor, std: torch.Tensor):
        self.names, self.severity = names, severity
        self.mean, self.std = mean, std

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        pixels = (images * std + mean).clamp(0, 1)
        choice = torch.randint(0, len(self.names) + 1, (images.shape[0], 1, 1, 1), generator=gen,
                               device=images.device)
        shifted = pixels
        for index, name in enumerate(self.names, start=1):
            shifted = torch.where(choice == index, apply_corruption(pixels, name, self.severity, gen), shifted)
        return torch.where(choice == 0, images, (shifted - mean) / std)
