"""Filter Response Normalization + Thresholded Linear Unit (Singh & Krishnan, 2020)."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.norms.registry import register_norm, require_spatial

CHANNEL = (1, -1, 1, 1)


class FilterResponseNorm(nn.Module):
    """y = gamma * x / sqrt(mean_HW(x^2) + eps) + beta, then TLU max(y, tau) when it is the activation."""

    def __init__(self, num_channels: int, apply_act: bool, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.tau = nn.Parameter(torch.zeros(num_channels)) if apply_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        require_spatial(x, "frn")
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        y = x * nu2.add(self.eps).rsqrt() * self.weight.view(CHANNEL) + self.bias.view(CHANNEL)
        return y if self.tau is None else torch.maximum(y, self.tau.view(CHANNEL))


@register_norm("frn")
def frn(num_channels: int, *, apply_act: bool = True, eps: float) -> nn.Module:
    return FilterResponseNorm(num_channels, apply_act, eps)
