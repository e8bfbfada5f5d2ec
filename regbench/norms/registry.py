"""The norm registry (declared in regbench.specs.norms): name -> factory `(num_channels, **params) -> nn.Module`,
plus each norm's traits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.runshape import Inactive, RunShape
from regbench.specs.norms import NORMS


@dataclass(frozen=True)
class NormTraits:
    """What a backbone must know about a norm beyond `norm(num_channels)`."""

    # The factory takes `apply_act` and the norm is its own nonlinearity, so the backbone adds no ReLU.
    includes_activation: bool = False
    # Which conv the backbone builds (see regbench.norms.conv.get_conv).
    conv: str = "plain"
    # Statistics over H x W of each sample: meaningless on the (B, C, 1, 1) features of an MLP.
    spatial: bool = False
    # Builder for token features (..., D), which makes the norm selectable on transformer backbones.
    tokens: Callable[..., nn.Module] | None = None
    # The norm works on a transformer's residual stream compressed to embed_dim - 1 coordinates (CRMSNorm).
    compresses_stream: bool = False
    # The transformer placements the norm supports (regbench.norms.placement.PLACEMENTS; None: all).
    placements: tuple[str, ...] | None = None
    # Only these backbones can use the norm (None: any).
    backbones: tuple[str, ...] | None = None
    # Applied to the finished backbone (freezing, initialization).
    prepare: Callable[[nn.Module], None] | None = None
    # (params, run shape) -> why the norm would be inactive on the run; raises ParamError for a harmful setting.
    check_run: Callable[[dict[str, Any], RunShape], list[Inactive]] | None = None
    # (params, run shape) -> the params given relative to the run (as fractions), made absolute for it.
    fit_run: Callable[[dict[str, Any], RunShape], dict[str, Any]] | None = None


NORM_TRAITS: dict[str, NormTraits] = {}


def register_norm(name: str, **traits) -> Callable:
    def add(factory: Callable) -> Callable:
        NORM_TRAITS[name] = NormTraits(**traits)
        return NORMS.register(name)(factory)
    return add


def with_activation(norm: nn.Module, apply_act: bool) -> nn.Module:
    """A norm followed by the backbones' default ReLU when the caller asks for the activation."""
    return nn.Sequential(norm, nn.ReLU(inplace=True)) if apply_act else norm


def require_spatial(x: torch.Tensor, name: str) -> None:
    """Per-sample spatial statistics of a 1x1 map are degenerate (InstanceNorm outputs 0, FRN sign(x))."""
    if x.shape[2] * x.shape[3] == 1:
        raise UserError(f"norm={name} takes statistics over each sample's H x W, but this backbone shrinks the "
                        f"images to 1x1 feature maps; use larger images, a shallower backbone or norm=groupnorm")
