"""The norm registry (declared in regbench.specs.norms, with each norm's traits): name -> factory
`(num_channels, **params) -> nn.Module`, plus each norm's hooks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.runshape import RunShape
from regbench.specs.norms import NORM_TRAITS, NORMS


@dataclass(frozen=True)
class NormHooks:
    """The code a norm brings beyond its factory (its declared traits are regbench.specs.norms.NORM_TRAITS)."""

    # Builder for token features (..., D): exactly the norms whose traits say `tokens` have one.
    tokens: Callable[..., nn.Module] | None = None
    # Applied to the finished backbone (freezing, initialization).
    prepare: Callable[[nn.Module], None] | None = None
    # (params, run shape) -> the params given relative to the run (as fractions), made absolute for it.
    fit_run: Callable[[dict[str, Any], RunShape], dict[str, Any]] | None = None


NORM_HOOKS: dict[str, NormHooks] = {}


def register_norm(name: str, **hooks) -> Callable:
    def add(factory: Callable) -> Callable:
        found = NormHooks(**hooks)
        if (found.tokens is not None) != NORM_TRAITS[name].tokens:
            raise ValueError(f"norm {name!r}: its traits say tokens={NORM_TRAITS[name].tokens} but its module "
                             f"registers {'a' if found.tokens else 'no'} token builder")
        registered = NORMS.register(name)(factory)
        NORM_HOOKS[name] = found
        return registered
    return add


def with_activation(norm: nn.Module, apply_act: bool) -> nn.Module:
    """A norm followed by the backbones' default ReLU when the caller asks for the activation."""
    return nn.Sequential(norm, nn.ReLU(inplace=True)) if apply_act else norm


def require_spatial(x: torch.Tensor, name: str) -> None:
    """Per-sample spatial statistics of a 1x1 map are degenerate (InstanceNorm outputs 0, FRN sign(x))."""
    if x.shape[2] * x.shape[3] == 1:
        raise UserError(f"norm={name} takes statistics over each sample's H x W, but this backbone shrinks the "
                        f"images to 1x1 feature maps; use larger images, a shallower backbone or norm=groupnorm")
