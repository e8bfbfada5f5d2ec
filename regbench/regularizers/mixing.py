"""mixup, CutMix and timm's per-batch switch between them: pure functions for the math, thin regularizers
that draw the randomness (in timm's draw order, so a run can be replayed against timm.data.Mixup).

Partners are paired by reversing the (already shuffled) batch, as timm does, so odd batch sizes work: the
middle sample is paired with itself.
"""
from __future__ import annotations

import math
import random

import torch

from regbench.regularizers.base import Regularizer
from regbench.regularizers.label_smoothing import smooth_targets
from regbench.specs.regularizers import REGULARIZERS, Exclusion, exclusive_tags

# exact: the box has the paper's side int(sqrt(1 - lam) * size) (timm >= 1.0.31); official: cut // 2 on both
# sides of the centre, a pixel short for odd sides (clovaai/CutMix-PyTorch rand_bbox, and the timm 0.5.4 that
# TransMix's code pins).


def mix_targets(targets: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * targets + (1.0 - lam) * targets.flip(0)


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x~ = lam x_i + (1 - lam) x_j, t~ = lam t_i + (1 - lam) t_j (Zhang et al., 2018, eq. 1)."""
    return lam * images + (1.0 - lam) * images.flip(0), mix_targets(targets, lam)


def cutmix_box(lam: float, height: int, width: int, rng: random.Random,
               box: str = "exact") -> tuple[int, int, int, int]:
    """A box of side ratio sqrt(1 - lam) centred uniformly in the image, clipped at the border
    (Yun et al., 2019, sec. 3.1); `box` in specs CUTMIX_BOXES. Returns (top, bottom, left, right), half-open."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    after_h, after_w = ((cut_h + 1) // 2, (cut_w + 1) // 2) if box == "exact" else (cut_h // 2, cut_w // 2)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + after_h, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + after_w, width)
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
    def __init__(self, *, alpha: float, prob: float, seed: int):
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

    def __init__(self, *, alpha: float, prob: float, seed: int, box: str):
        super().__init__(alpha=alpha, prob=prob, seed=seed)
        self.box = box

    def mix_batch(self, images, targets, index):
        lam = self.draw_lam()
        if lam is None:
            return images, targets
        mixed, mixed_targets, _ = cutmix(images, targets, cutmix_box(lam, *images.shape[-2:], self.rng, self.box))
        return mixed, mixed_targets


@REGULARIZERS.register("mixup_cutmix")
class MixupCutMix(Regularizer):
    """timm's `Mixup(mode="batch")`: with probability `prob` mix the batch at all; then CutMix with probability
    `switch_prob`, else mixup, each with its own alpha; label smoothing folded into the soft targets."""

    name = "mixup_cutmix"

    def __init__(self, *, mixup_alpha: float, cutmix_alpha: float, prob: float, switch_prob: float,
                 label_smoothing: float, seed: int):
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing
        self.rng = random.Random(seed)

    @property
    def exclusive(self) -> tuple[Exclusion, ...]:
        return exclusive_tags(self.name, {"label_smoothing": self.label_smoothing})

    def mix_batch(self, images, targets, index):
        # timm's mixup_target: on = 1 - eps + eps/C, off = eps/C, whether or not the batch is mixed.
        targets = smooth_targets(targets, self.label_smoothing)
        if self.rng.random() >= self.prob:
            return images, targets
        if self.rng.random() < self.switch_prob:
            lam = self.rng.betavariate(self.cutmix_alpha, self.cutmix_alpha)
            mixed, mixed_targets, _ = cutmix(images, targets, cutmix_box(lam, *images.shape[-2:], self.rng))
            return mixed, mixed_targets
        return mixup(images, targets, self.rng.betavariate(self.mixup_alpha, self.mixup_alpha))
