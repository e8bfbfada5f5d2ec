"""No normalization; residual backbones then scale each residual branch by a zero-initialized scalar."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.norms.registry import register_norm


class SkipInit(nn.Module):
    """alpha * branch with alpha = 0 at init (De & Smith, 2020, "Batch Normalization Biases Residual Blocks
    Towards the Identity Function in Deep Networks"): every residual block starts as the identity, which is
    what lets deep residual networks without normalization train."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        return self.alpha * branch


@register_norm("none")
def no_norm(num_channels: int) -> nn.Module:
    return nn.Identity()
