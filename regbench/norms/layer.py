"""`NormLayer`: what backbones receive as `norm_layer` -- a norm builder plus the traits they act on."""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn as nn

from regbench.errors import ParamError, UserError
from regbench.norms.conv import get_conv
from regbench.norms.registry import NORM_HOOKS, NORMS, with_activation
from regbench.runshape import RunShape
from regbench.specs.norms import NORM_TRAITS
from regbench.specs.placement import Placement, split_norm_config


class NormLayer:
    """`norm_layer(num_channels, act=False)` builds one norm; `act=True` also asks for the nonlinearity after
    it, which a norm that includes its activation (EvoNorm, FRN, SELU) provides itself instead of a ReLU."""

    def __init__(self, name: str, params: Mapping[str, Any], placement: Placement):
        self.name, self.params, self.placement = name, dict(params), placement
        self.traits, self.hooks = NORM_TRAITS[name], NORM_HOOKS[name]

    def __call__(self, num_channels: int, act: bool = False) -> nn.Module:
        if self.traits.includes_activation:
            return NORMS.create(self.name, self.params, num_channels=num_channels, apply_act=act)
        return with_activation(NORMS.create(self.name, self.params, num_channels=num_channels), act)

    def tokens(self, dim: int) -> nn.Module:
        """The norm for (..., dim) token features of a transformer."""
        if self.hooks.tokens is None:
            raise UserError(f"norm={self.name} cannot normalize transformer tokens")
        try:
            return self.hooks.tokens(dim, **self.params)
        except ParamError as err:
            raise UserError(str(err.at("norm"))) from None

    @property
    def includes_activation(self) -> bool:
        return self.traits.includes_activation

    @property
    def compresses_stream(self) -> bool:
        return self.traits.compresses_stream

    @property
    def conv_layer(self) -> type[nn.Conv2d]:
        return get_conv(self.traits.conv)

    @property
    def skip_init(self) -> bool:
        """Without any norm, residual branches start at zero (SkipInit) so deep residual nets still train."""
        return self.name == "none"

    def prepare(self, model: nn.Module) -> None:
        if self.hooks.prepare is not None:
            self.hooks.prepare(model)


def norm_layer_from_config(cfg: Mapping[str, Any], run: RunShape | None = None) -> NormLayer:
    """The `norm_layer` for backbones, with every parameter checked once up front on a probe layer. Given the
    `run`'s shape, parameters set relative to the run (fractions) are made absolute for it."""
    name, params, placement = split_norm_config(cfg)
    params = NORMS.with_defaults(name, params)
    fit_run = NORM_HOOKS[name].fit_run
    if run is not None and fit_run is not None:
        params = {**params, **fit_run(params, run)}
    layer = NormLayer(name, params, placement)
    groups = params.get("groups")
    probe_channels = groups if isinstance(groups, int) and groups > 0 else 1  # a width every group count divides
    NORMS.create(name, params, num_channels=probe_channels,
                 **({"apply_act": True} if layer.includes_activation else {}))
    return layer
