"""RMSNorm (Zhang & Sennrich, 2019): divide by the root mean square over channels, no mean subtraction."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.errors import check_positive
from regbench.norms.registry import register_norm


class RMSNormChannels(nn.Module):
    """RMSNorm over dimension `dim` (1 for (B, C, H, W) maps: per sample and position; -1 for tokens)."""

    def __init__(self, num_channels: int, eps: float, dim: int):
        super().__init__()
        self.eps, self.dim = eps, dim
        self.weight = nn.Parameter(torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.pow(2).mean(dim=self.dim, keepdim=True).add(self.eps).rsqrt()
        shape = [1] * x.ndim
        shape[self.dim] = -1
        return x * scale * self.weight.view(shape)


def rmsnorm_tokens(dim: int, *, eps: float = 1e-6) -> nn.Module:
    check_positive("eps", eps)
    return RMSNormChannels(dim, eps, dim=-1)


@register_norm("rmsnorm", tokens=rmsnorm_tokens)
def rmsnorm(num_channels: int, *, eps: float = 1e-6) -> nn.Module:
    check_positive("eps", eps)
    return RMSNormChannels(num_channels, eps, dim=1)
