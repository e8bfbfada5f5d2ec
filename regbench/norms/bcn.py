"""Batch-Channel Normalization (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and
Weight Standardization", 2020): BatchNorm with estimated statistics, then GroupNorm, on WS convs."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.specs.norms import check_groups
from regbench.norms.registry import register_norm

CHANNEL = (1, -1, 1, 1)


class EstimatedBatchNorm(nn.Module):
    """BatchNorm that normalizes with its running estimates even in training; each training batch first
    moves the estimates towards its own statistics, so tiny batches only nudge them (no gradient through them).
    Then its own per-channel affine gamma_b * x_hat + beta_b, as in the paper's batch stage and the authors'
    EstBN (joe-siyuan-qiao/Batch-Channel-Normalization).

    As in EstBN, the batch's variance is measured around the running mean before this batch updates it, not
    around the batch's own mean: a batch of n values per channel has a biased own variance ((n-1)/n of the
    true one, 0.75 at batch 2 on 1x2 maps), so the estimate would settle too low exactly where BCN is meant
    to help; around the running mean it settles at the true variance (plus the running mean's own jitter)."""

    def __init__(self, num_channels: int, momentum: float, eps: float):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                spread_around_estimate = (x - self.running_mean.view(CHANNEL)).square().mean(dim=(0, 2, 3))
                self.running_mean.lerp_(x.mean(dim=(0, 2, 3)), self.momentum)
                self.running_var.lerp_(spread_around_estimate, self.momentum)
        x_hat = (x - self.running_mean.view(CHANNEL)) / self.running_var.add(self.eps).sqrt().view(CHANNEL)
        return x_hat * self.weight.view(CHANNEL) + self.bias.view(CHANNEL)


class BatchChannelNorm(nn.Module):
    """BCN: the batch stage (estimated statistics, its own affine), then the channel stage: GroupNorm with a
    per-channel affine. (The authors' code shares the channel-stage affine within each group; a per-channel
    one, as in GroupNorm, contains that case.)"""

    def __init__(self, num_channels: int, groups: int, momentum: float, eps: float):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.batch_stage = EstimatedBatchNorm(num_channels, momentum, eps)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(self.batch_stage(x), self.groups, eps=self.eps)
        return x * self.weight.view(CHANNEL) + self.bias.view(CHANNEL)


@register_norm("bcn_ws")
def bcn_ws(num_channels: int, *, groups: int, momentum: float, eps: float) -> nn.Module:
    check_groups(groups, num_channels)
    return BatchChannelNorm(num_channels, groups, momentum, eps)
