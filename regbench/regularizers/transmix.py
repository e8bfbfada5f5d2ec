"""TransMix (Chen et al., "TransMix: Attend to Mix for Vision Transformers", CVPR 2022): CutMix on the input,
then the mixed targets re-weighted by how much of the class token's attention falls on each image's patches.

Sec. 3.2: lam = A . M, with A the class token's attention over the patch tokens in the last block (softmax,
averaged over the heads) and M the CutMix box mask downsampled to the patch grid by nearest interpolation.
Sec. 4.1 and the official code (github.com/Beckschen/TransMix, transmix.py): the label weight is the mean of
that and CutMix's area lambda, and A is normalized over the patches (the class token's attention to itself is
left out), so uniform attention gives exactly the pasted-patch fraction. `attention_weight` sets the mix:
0.5 is the paper's mean, 1 the attention alone, 0 plain CutMix.

Labels here weigh each sample's own target (lam) against its partner's, as in regbench.regularizers.mixing.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.backbones.vit import VisionTransformer
from regbench.errors import UserError
from regbench.regularizers.base import Regularizer, soft_cross_entropy
from regbench.regularizers.label_smoothing import smooth_targets
from regbench.regularizers.mixing import cutmix, cutmix_box, mix_targets
from regbench.specs.regularizers import REGULARIZERS


def patch_mask(box: tuple[int, int, int, int], image_size: tuple[int, int], grid: tuple[int, int],
               device: torch.device | None = None) -> torch.Tensor:
    """(patches,) 1 where the patch came from the partner: the pixel box mask downsampled to the patch grid by
    nearest interpolation (each patch takes its top-left pixel), flattened row by row like the tokens. Built on
    the images' device: no host-to-device copy per batch."""
    top, bottom, left, right = box
    mask = torch.zeros(1, 1, *image_size, device=device)
    mask[..., top:bottom, left:right] = 1.0
    return F.interpolate(mask, size=grid, mode="nearest").flatten()


def pasted_attention(attention: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) the share of each sample's class attention over the patches (B, patches) that lands on the pasted
    ones: A . M / sum(A)."""
    return (attention * mask).sum(dim=-1) / attention.sum(dim=-1)


def transmix_lambda(area_lam: float, pasted: torch.Tensor, attention_weight: float) -> torch.Tensor:
    """(B,) weight of each sample's own target: (1 - w) * area lam + w * (1 - attention on the pasted patches)."""
    return (1.0 - attention_weight) * area_lam + attention_weight * (1.0 - pasted)


def transmix_targets(targets: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Per-sample mixing with the batch-reversed partner: lam_i t_i + (1 - lam_i) t_partner(i)."""
    lam = lam.to(targets.dtype)[:, None]
    return lam * targets + (1.0 - lam) * targets.flip(0)


@REGULARIZERS.register("transmix")
class TransMix(Regularizer):
    name = "transmix"

    def __init__(self, *, alpha: float, prob: float, attention_weight: float, label_smoothing: float, seed: int,
                 box: str):
        self.alpha, self.prob, self.box = alpha, prob, box
        self.attention_weight, self.label_smoothing = float(attention_weight), label_smoothing
        self.rng = random.Random(seed)
        self.vit: VisionTransformer | None = None
        # (targets before mixing, area lambda, patch mask) of the batch mixed last, for its loss hook.
        self._pending: tuple[torch.Tensor, float, torch.Tensor] | None = None

    def check_backbone(self, backbone: Mapping[str, Any]) -> None:
        name = backbone.get("name")
        if name != "vit_tiny":
            raise UserError(f"regularizer=transmix needs backbone=vit_tiny: it re-weights the CutMix targets by a "
                            f"vision transformer's class-token attention, which backbone={name} does not have")
        pool = backbone["pool"]
        if pool != "cls":
            raise UserError(f"regularizer=transmix needs backbone.pool=cls: it re-weights the CutMix targets by the "
                            f"class token's attention, and backbone.pool={pool} has no class token")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        if not isinstance(model, VisionTransformer):
            raise UserError(f"regularizer=transmix needs backbone=vit_tiny; {type(model).__name__} has no "
                            f"class-token attention")
        model.record_class_attention()
        self.vit = model
        return model

    def mix_batch(self, images, targets, index):
        targets = smooth_targets(targets, self.label_smoothing)
        self._pending = None
        # CutMix's draws in CutMix's order, so attention_weight=0 replays regularizer=cutmix exactly.
        if self.rng.random() >= self.prob:
            return images, targets
        box = cutmix_box(self.rng.betavariate(self.alpha, self.alpha), *images.shape[-2:], self.rng, self.box)
        mixed, mixed_targets, area_lam = cutmix(images, targets, box)
        mask = patch_mask(box, tuple(images.shape[-2:]), self.vit.grid, images.device).to(images.dtype)
        self._pending = (targets, area_lam, mask)
        return mixed, mixed_targets

    def loss(self, per_sample, logits, targets, index, model):
        if self._pending is None:
            return per_sample
        clean, area_lam, mask = self._pending
        self._pending = None
        # The attention of this very forward (detached, as in the official code): no extra pass.
        lam = transmix_lambda(area_lam, pasted_attention(self.vit.class_attention(), mask), self.attention_weight)
        change = transmix_targets(clean, lam) - mix_targets(clean, area_lam)
        # Cross-entropy is linear in the targets, so adding it against the change turns the area-weighted loss
        # into the re-weighted one, keeping what earlier loss hooks added. The change sums to zero over the
        # classes, which makes this term linear in the logits too: exact for averaged multi-sample logits.
        return per_sample + soft_cross_entropy(logits, change)


__all__ = ["TransMix", "pasted_attention", "patch_mask", "transmix_lambda", "transmix_targets"]
