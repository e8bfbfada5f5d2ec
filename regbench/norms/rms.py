"""RMSNorm (Zhang & Sennrich, 2019): divide by the root mean square over channels, no mean subtraction."""
from __future__ import annotations

import torch
import torch.nn as nn

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


def rmsnorm_tokens(dim: int, *, eps: float) -> nn.Module:
    return RMSNormChannels(dim, eps, dim=-1)


@register_norm("rmsnorm", tokens=rmsnorm_tokens)
def rmsnorm(num_channels: int, *, eps: float) -> nn.Module:
    return RMSNormChannels(num_channels, eps, dim=1)


class CompressedRMSNorm(nn.Module):
    """CRMSNorm (Jiang et al., 2023, "Pre-RMSNorm and Pre-CRMSNorm Transformers"): a zero-mean vector of
    width + 1 coordinates, given by its first `width` (the last is minus their sum), divided by the RMS of all
    width + 1: x / sqrt((sum x_i^2 + (sum x_i)^2) / (width + 1) + eps). The output is again the compressed form
    of a zero-mean vector, which the next linear layer reads as such. Per-coordinate gain as in rmsnorm."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square_sum = x.pow(2).sum(dim=-1, keepdim=True) + x.sum(dim=-1, keepdim=True).pow(2)
        return x * square_sum.div(x.shape[-1] + 1).add(self.eps).rsqrt() * self.weight


def crmsnorm_tokens(width: int, *, eps: float) -> nn.Module:
    return CompressedRMSNorm(width, eps)


# Only Pre-Norm transformers keep a zero-mean stream: a post-norm's output (and Peri-LN's output norm) joins the
# stream with its gain and bias, which need not have zero mean.
@register_norm("crmsnorm", tokens=crmsnorm_tokens)
def crmsnorm(num_channels: int, *, eps: float) -> nn.Module:
    return crmsnorm_tokens(num_channels, eps=eps)
