"""MixOE, Mixture Outlier Exposure (Zhang et al., WACV 2023): each training batch is also mixed with a batch of
outlier images (Mixup, or CutMix pasting an outlier box into the in-distribution image), and the mixed images are
trained towards lam * y + (1 - lam) * uniform, so that confidence decays linearly from in-distribution to outlier:
loss = CE(f(x), y) + beta * CE(f(x~), lam * y + (1 - lam) / C).

As in the official code (zjysteven/MixOE, train_mixoe.py): one lam ~ Beta(alpha, alpha) per batch; CutMix's lam
becomes the exact fraction of in-distribution pixels left; the clean and the mixed batch go through the network in
two forward passes. The outliers are the outlier dataset's training split (its test split stays unseen for
eval=[ood]), held on the training device as uint8 and cut into batches from a seeded permutation; a pass that runs
out starts a new permutation (the official loop skips the in-distribution batches left over).
"""
from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from regbench.specs.data import DATASETS
from regbench.errors import UserError
from regbench.evaluation.ood_data import like_in_distribution
from regbench.regularizers.base import Regularizer, soft_cross_entropy
from regbench.regularizers.mixing import cutmix_box
from regbench.specs.regularizers import REGULARIZERS


def outlier_targets(targets: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * y + (1 - lam) * uniform over the C classes: the mixed sample's soft target."""
    return lam * targets + (1.0 - lam) / targets.shape[-1]


def mixup_outliers(images: torch.Tensor, outliers: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * images + (1.0 - lam) * outliers


def cutmix_outliers(images: torch.Tensor, outliers: torch.Tensor,
                    box: tuple[int, int, int, int]) -> tuple[torch.Tensor, float]:
    """The outliers' `box` (top, bottom, left, right; half-open) pasted into the in-distribution images; returns
    them and lam, the exact fraction of in-distribution pixels left."""
    top, bottom, left, right = box
    height, width = images.shape[-2:]
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = outliers[..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (height * width)


def load_outliers(name: str, data: Mapping[str, Any]) -> torch.Tensor:
    """The training split of dataset `name` (uint8, N x C x H x W) with its default parameters, from the
    in-distribution's data root; a missing file is one UserError line."""
    loaded = DATASETS.create(name, {}, path="regularizer.mixoe.outliers", root=data["root"],
                             download=data["download"], split_seed=data["split_seed"])
    return loaded.train_x


class OutlierBatches:
    """Batches of outlier images cut by index from a seeded permutation, a new permutation for each pass."""

    def __init__(self, count: int, seed: int):
        self.count = count
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(count, generator=self.generator)
        self.position = 0

    def next_indices(self, batch_size: int) -> torch.Tensor:
        parts = []
        while batch_size > 0:
            if self.position == self.count:
                self.order, self.position = torch.randperm(self.count, generator=self.generator), 0
            taken = self.order[self.position:self.position + batch_size]
            parts.append(taken)
            self.position += len(taken)
            batch_size -= len(taken)
        return torch.cat(parts)


@REGULARIZERS.register("mixoe")
class MixOE(Regularizer, nn.Module):
    name = "mixoe"

    def __init__(self, *, outliers: str, mode: str, alpha: float, beta: float, seed: int):
        super().__init__()
        self.outlier_dataset, self.mode, self.alpha, self.beta, self.seed = outliers, mode, alpha, beta, seed
        self.rng = random.Random(seed)
        self._loaded: torch.Tensor | None = None  # uint8 outlier images, from check_stack
        self._batches: OutlierBatches | None = None
        self._clean: tuple[torch.Tensor, torch.Tensor] | None = None

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        """Refuse outliers that are the in-distribution or an OOD test set, then load them (a missing file is
        refused here, before any run directory exists)."""
        data, name = run["data"], self.outlier_dataset
        if data["name"] == "modular":
            raise UserError("regularizer=mixoe mixes images, but data=modular's inputs are one-hot codes of numbers; "
                            "drop mixoe or train on an image dataset")
        if name == data["name"]:
            raise UserError(f"regularizer.mixoe.outliers={name!r} is invalid: must differ from the in-distribution "
                            f"data={data['name']}")
        ood = run.get("eval", {}).get("ood")
        if ood is not None and name in ood["datasets"]:
            # Its training split would be the same distribution as the test split eval=[ood] scores as unseen.
            raise UserError(f"regularizer.mixoe.outliers={name!r} is invalid: eval.ood.datasets="
                            f"{list(ood['datasets'])} tests on it; train on outliers the OOD evaluation does not use")
        self._loaded = load_outliers(name, data)

    def set_image_format(self, image_shape: tuple[int, int, int], mean: torch.Tensor, std: torch.Tensor) -> None:
        if self._loaded is None:
            raise RuntimeError("MixOE's outliers are not loaded: build it with the run config (check_stack)")
        # Buffers follow the module to the training device; not saved: a resumed run loads them again.
        self.register_buffer("outliers", self._loaded, persistent=False)
        self.register_buffer("mean", mean.clone(), persistent=False)
        self.register_buffer("std", std.clone(), persistent=False)
        self.image_shape = image_shape
        self._batches = OutlierBatches(len(self._loaded), self.seed)
        self._loaded = None

    def outlier_batch(self, batch_size: int) -> torch.Tensor:
        """The next `batch_size` outliers, resized and normalized like the in-distribution images."""
        if self._batches is None:
            raise RuntimeError("MixOE's image format is unset: call set_image_format before training")
        picked = self.outliers[self._batches.next_indices(batch_size).to(self.outliers.device)]
        return like_in_distribution(picked, self.image_shape, self.mean, self.std)

    def mixed_batch(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The in-distribution batch mixed with an outlier batch, and its soft targets."""
        outliers = self.outlier_batch(images.shape[0]).to(images.dtype)
        lam = self.rng.betavariate(self.alpha, self.alpha)
        if self.mode == "cutmix":
            mixed, lam = cutmix_outliers(images, outliers, cutmix_box(lam, *images.shape[-2:], self.rng))
        else:
            mixed = mixup_outliers(images, outliers, lam)
        return mixed, outlier_targets(targets, lam)

    def mix_batch(self, images, targets, index):
        # The module trains on the clean batch; the mixed one is made and scored in `loss`.
        self._clean = (images, targets)
        return images, targets

    def loss(self, per_sample, logits, targets, index, model):
        images, clean_targets = self._clean
        self._clean = None
        mixed, mixed_targets = self.mixed_batch(images, clean_targets)
        return per_sample + self.beta * soft_cross_entropy(model(mixed), mixed_targets)
