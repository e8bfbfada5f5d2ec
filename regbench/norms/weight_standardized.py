"""Weight Standardization on every conv, with BatchNorm or GroupNorm after it (Qiao et al., 2019)."""
from __future__ import annotations

import torch.nn as nn

from regbench.norms.batch import batchnorm
from regbench.norms.group import groupnorm
from regbench.norms.registry import register_norm


@register_norm("ws_batchnorm")
def ws_batchnorm(num_channels: int, *, momentum: float, eps: float) -> nn.Module:
    return batchnorm(num_channels, momentum=momentum, eps=eps)


@register_norm("ws_groupnorm")
def ws_groupnorm(num_channels: int, *, groups: int, eps: float) -> nn.Module:
    return groupnorm(num_channels, groups=groups, eps=eps)
