"""Self-normalizing networks (Klambauer et al., 2017): SELU + AlphaDropout as the "norm", LeCun-normal init."""
from __future__ import annotations

import math

import torch.nn as nn

from regbench.norms.registry import register_norm


def lecun_normal_init(model: nn.Module) -> None:
    """Weights ~ N(0, 1 / fan_in), biases 0: the init under which SELU keeps activations at zero mean, unit var."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
            nn.init.zeros_(module.bias)


@register_norm("selu", prepare=lecun_normal_init)
def selu(num_channels: int, *, apply_act: bool = True, alpha_dropout: float) -> nn.Module:
    if not apply_act:
        return nn.Identity()
    return nn.Sequential(nn.SELU(), nn.AlphaDropout(alpha_dropout))
