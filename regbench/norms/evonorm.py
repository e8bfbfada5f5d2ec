"""EvoNorm-B0 and EvoNorm-S0 (Liu et al., 2020, "Evolving Normalization-Activation Layers").

Both replace norm + activation. With `apply_act=False` (before a residual sum) only the affine remains,
as in the paper's reference models and timm.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.specs.norms import check_groups
from regbench.norms.registry import register_norm, require_spatial

CHANNEL = (1, -1, 1, 1)


class EvoNormBase(nn.Module):
    def __init__(self, num_channels: int, apply_act: bool, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.v = nn.Parameter(torch.ones(num_channels)) if apply_act else None

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(CHANNEL) + self.bias.view(CHANNEL)


class EvoNormB0(EvoNormBase):
    """y = x / max(sqrt(s2_batch + eps), v * x + sqrt(s2_instance + eps)) * gamma + beta."""

    batch_statistics = True  # a training batch of one has no batch variance of its own

    def __init__(self, num_channels: int, apply_act: bool, momentum: float, eps: float):
        super().__init__(num_channels, apply_act, eps)
        self.momentum = momentum
        self.register_buffer("running_var", torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            return self.affine(x)
        require_spatial(x, "evonorm_b0")
        if self.training:
            batch_var = x.var(dim=(0, 2, 3), unbiased=False)
            n = x.numel() / x.shape[1]
            with torch.no_grad():  # the running estimate stores the unbiased variance, as BatchNorm does
                self.running_var.lerp_(batch_var * n / max(n - 1, 1), self.momentum)
        else:
            batch_var = self.running_var
        batch_std = batch_var.add(self.eps).sqrt().view(CHANNEL)
        instance_std = x.var(dim=(2, 3), unbiased=False, keepdim=True).add(self.eps).sqrt()
        return self.affine(x / torch.maximum(batch_std, x * self.v.view(CHANNEL) + instance_std))


class EvoNormS0(EvoNormBase):
    """y = x * sigmoid(v * x) / sqrt(s2_group + eps) * gamma + beta: batch-independent."""

    def __init__(self, num_channels: int, apply_act: bool, groups: int, eps: float):
        super().__init__(num_channels, apply_act, eps)
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            return self.affine(x)
        b, c, h, w = x.shape
        grouped = x.reshape(b, self.groups, -1)
        group_std = grouped.var(dim=-1, unbiased=False, keepdim=True).add(self.eps).sqrt()
        group_std = group_std.expand(b, self.groups, grouped.shape[-1]).reshape(b, c, h, w)
        return self.affine(x * torch.sigmoid(x * self.v.view(CHANNEL)) / group_std)


@register_norm("evonorm_b0")
def evonorm_b0(num_channels: int, *, apply_act: bool = True, momentum: float, eps: float) -> nn.Module:
    return EvoNormB0(num_channels, apply_act, momentum, eps)


@register_norm("evonorm_s0")
def evonorm_s0(num_channels: int, *, apply_act: bool = True, groups: int, eps: float) -> nn.Module:
    check_groups(groups, num_channels)
    return EvoNormS0(num_channels, apply_act, groups, eps)
