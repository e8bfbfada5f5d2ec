"""Normalization layers behind one factory: `get_norm(name, num_channels, **params)` (timm's get_norm_layer)."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import torch.nn as nn

from regbench.errors import check, check_positive, check_positive_int, check_probability
from regbench.registry import Registry

NORMS = Registry("norm", "norm")


@NORMS.register("batchnorm")
def batchnorm(num_channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
    check_probability("momentum", momentum)
    check_positive("eps", eps)
    return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)


@NORMS.register("groupnorm")
def groupnorm(num_channels: int, *, groups: int = 32, eps: float = 1e-5) -> nn.Module:
    check_positive_int("groups", groups)
    check_positive("eps", eps)
    # Layers narrower than `groups` get one channel per group, as timm's GroupNorm does not; say so loudly instead.
    check(num_channels % groups == 0, "groups", groups, f"must divide every layer's channel count ({num_channels} here)")
    return nn.GroupNorm(groups, num_channels, eps=eps)


@NORMS.register("layernorm")
def layernorm(num_channels: int, *, eps: float = 1e-5) -> nn.Module:
    check_positive("eps", eps)
    # One group = statistics over (C, H, W) of each sample, with a per-channel affine.
    return nn.GroupNorm(1, num_channels, eps=eps)


@NORMS.register("none")
def no_norm(num_channels: int) -> nn.Module:
    return nn.Identity()


def get_norm(name: str, num_channels: int, **params: Any) -> nn.Module:
    return NORMS.create(name, params, num_channels=num_channels)


def norm_layer_from_config(cfg: Mapping[str, Any]) -> Callable[[int], nn.Module]:
    """A `norm_layer(num_channels)` callable for backbones, checked once up front."""
    params = {k: v for k, v in cfg.items() if k != "name"}
    NORMS.get(cfg["name"])
    return partial(get_norm, cfg["name"], **params)
