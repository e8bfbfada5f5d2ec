"""Inference export of a vit_tiny whose norms have fixed statistics at inference (unified_norm, powernorm): each
norm is then a per-channel affine map x * scale + shift, folded into the adjacent linear layer (Unified
Normalization's fusion), so the exported model computes no normalization at all."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from regbench.backbones.vit import ScaledNorm, VisionTransformer
from regbench.errors import UserError


def affine_of(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    factor = norm.scale if isinstance(norm, ScaledNorm) else 1.0
    inner = norm.norm if isinstance(norm, ScaledNorm) else norm
    if not hasattr(inner, "inference_affine"):
        raise UserError(f"{type(inner).__name__} normalizes each input by its own statistics at inference, so it "
                        f"cannot be folded into a linear layer; only norms with fixed inference statistics fold "
                        f"(norm=unified_norm, norm=powernorm)")
    scale, shift = inner.inference_affine()
    return scale * factor, shift * factor


def input_projection(sublayer: nn.Module) -> tuple[nn.Parameter, nn.Parameter]:
    """The weight and bias of the first linear map a sublayer applies to its input."""
    if isinstance(sublayer, nn.Sequential):
        return sublayer[0].weight, sublayer[0].bias
    return sublayer.input_projection()


def output_projection(sublayer: nn.Module) -> tuple[nn.Parameter, nn.Parameter]:
    """The weight and bias of the last linear map of a sublayer, whose output joins the residual stream."""
    if isinstance(sublayer, nn.Sequential):
        return sublayer[-1].weight, sublayer[-1].bias
    return sublayer.output_projection()


def fold_before(weight: nn.Parameter, bias: nn.Parameter, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """W (x * scale + shift) + b = (W diag(scale)) x + (W shift + b)."""
    bias.add_(weight @ shift)
    weight.mul_(scale)


def fold_after(weight: nn.Parameter, bias: nn.Parameter, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """(W x + b) * scale + shift = (diag(scale) W) x + (b * scale + shift)."""
    weight.mul_(scale[:, None])
    bias.mul_(scale).add_(shift)


@torch.no_grad()
def fuse_norms(model: VisionTransformer) -> VisionTransformer:
    """An eval-mode copy of `model` with every norm folded into its neighbouring linear layer: a block's input
    norms into the sublayer's first projection, Peri-LN's output norms into its last, the final norm into the
    head (token pooling is linear, so it commutes with a per-channel affine map)."""
    fused = copy.deepcopy(model).eval()
    for index, block in enumerate(fused.blocks):
        if block.kind == "post":
            raise UserError(f"block {index} is post-norm: its norm follows the residual sum, which no single linear "
                            f"layer computes, so it cannot be folded; fuse pre- or peri-norm models")
        for i, sublayer in enumerate(block.sublayers):
            fold_before(*input_projection(sublayer), *affine_of(block.norms[i]))
            block.norms[i] = nn.Identity()
            if block.out_norms is not None:
                fold_after(*output_projection(sublayer), *affine_of(block.out_norms[i]))
                block.out_norms[i] = nn.Identity()
    fold_before(fused.head.weight, fused.head.bias, *affine_of(fused.final_norm))
    fused.final_norm = nn.Identity()
    return fused
