"""Per-sample norms from the GroupNorm family: GroupNorm, LayerNorm, InstanceNorm."""
from __future__ import annotations

import torch.nn as nn

from regbench.norms.registry import register_norm, require_spatial
from regbench.specs.norms import check_groups


@register_norm("groupnorm")
def groupnorm(num_channels: int, *, groups: int, eps: float) -> nn.Module:
    check_groups(groups, num_channels)
    return nn.GroupNorm(groups, num_channels, eps=eps)


def layernorm_tokens(dim: int, *, eps: float) -> nn.Module:
    return nn.LayerNorm(dim, eps=eps)


@register_norm("layernorm", tokens=layernorm_tokens)
def layernorm(num_channels: int, *, eps: float) -> nn.Module:
    # One group = statistics over (C, H, W) of each sample, with a per-channel affine.
    return nn.GroupNorm(1, num_channels, eps=eps)


class InstanceNorm(nn.InstanceNorm2d):
    def forward(self, x):
        require_spatial(x, "instancenorm")
        return super().forward(x)


@register_norm("instancenorm")
def instancenorm(num_channels: int, *, eps: float) -> nn.Module:
    return InstanceNorm(num_channels, eps=eps, affine=True, track_running_stats=False)
