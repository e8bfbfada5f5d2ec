"""Normalization layers behind one factory: `get_norm(name, num_channels, **params)` (timm's get_norm_layer),
and the conv factory `get_conv(name)` that the weight-standardized norms switch. One family per module;
importing this package registers every norm."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from regbench.norms import (  # noqa: F401  (registration side effects)
    batch, bcn, evonorm, frn, group, identity, powernorm, rms, selu, unified, weight_standardized,
)
from regbench.norms.conv import WSConv2d, get_conv, swap_convs
from regbench.norms.identity import SkipInit
from regbench.norms.layer import NormLayer, norm_layer_from_config
from regbench.norms.registry import NORMS


def get_norm(name: str, num_channels: int, **params: Any) -> nn.Module:
    return NORMS.create(name, params, num_channels=num_channels)


def uses_batch_statistics(module: nn.Module) -> bool:
    """Whether `module` normalizes a training batch by that batch's own statistics (degenerate at batch 1)."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or getattr(module, "batch_statistics", False)


__all__ = ["NORMS", "NormLayer", "SkipInit", "WSConv2d", "get_conv", "get_norm", "norm_layer_from_config", "swap_convs",
           "uses_batch_statistics"]
