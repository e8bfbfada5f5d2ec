"""mixup and CutMix: pure functions for the math, thin regularizers that draw the randomness.

Partners are paired by reversing the (already shuffled) batch, as timm does, so odd batch sizes work: the
middle sample is paired with itself.
"""
from __future__ import annotations

import math
import random

import torch

from regbench.errors import check_positive, check_probability
from regbench.regularizers.base import Regularizer
from regbench.regularizers.registry import REGULARIZERS


def mix_targets(targets: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * targets + (1.0 - lam) * targets.flip(0)


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x~ = lam x_i + (1 - lam) x_j, t~ = lam t_i + (1 - lam) t_j (Zhang et al., 2018, eq. 1)."""
    return lam * images + (1.0 - lam) * images.flip(0), mix_targets(targets, lam)


def cutmix_box(lam: float, height: int, width: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A box of side ratio sqrt(1 - lam) centred uniformly in the image, clipped at the border
    (Yun et al., 2019, sec. 3.1). Returns (top, bottom, left, right), half-open."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, width)
    return top, bottom, left, right


def cutmix(images: torch.Tensor, targets: torch.Tensor,
           box: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste the partner's box; lam becomes the exact fraction of pixels kept from the sample itself."""
    top, bottom, left, right = box
    height, width = images.shape[-2:]
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images.flip(0)[..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, mix_targets(targets, lam), lam


class _Mixing(Regularizer):
    exclusive = "input mixing"

    def __init__(self, *, alpha: float, prob: float, seed: int):
        check_positive("alpha", alpha)
        check_probability("prob", prob)
        self.alpha, self.prob = alpha, prob
        self.rng = random.Random(seed)

    def draw_lam(self) -> float | None:
        """None when this batch is left unmixed (probability 1 - prob)."""
        if self.rng.random() >= self.prob:
            return None
        return self.rng.betavariate(self.alpha, self.alpha)


@REGULARIZERS.register("mixup")
class Mixup(_Mixing):
    name = "mixup"

    def mix_batch(self, images, targets, index):
        lam = self.draw_lam()
        return (images, targets) if lam is None else mixup(images, targets, lam)


@REGULARIZERS.register("cutmix")
class CutMix(_Mixing):
    name = "cutmix"

    def mix_batch(self, images, targets, index):
        lam = self.draw_lam()
        if lam is None:
            return images, targets
        mixed, mixed_targets, _ = cutmix(images, targets, cutmix_box(lam, *images.shape[-2:], self.rng))
        return mixed, mixed_targets
