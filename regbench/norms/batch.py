"""Batch-statistics norms: BatchNorm, Ghost BatchNorm, and BatchNorm as the only trained layer."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import check, check_positive, check_probability
from regbench.norms.registry import register_norm


def check_bn_params(momentum: float, eps: float) -> None:
    check_probability("momentum", momentum)
    check_positive("eps", eps)


@register_norm("batchnorm")
def batchnorm(num_channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
    check_bn_params(momentum, eps)
    return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over "ghost" batches of about `virtual_batch_size` samples (Hoffer et al., 2017).

    The batch is split into floor(B / virtual_batch_size) near-equal chunks, so no chunk is smaller than
    min(B, virtual_batch_size); each chunk is normalized with its own statistics and updates the running ones.
    """

    def __init__(self, num_channels: int, virtual_batch_size: int, **kw):
        super().__init__(num_channels, **kw)
        self.virtual_batch_size = virtual_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        chunks = x.tensor_split(max(1, x.shape[0] // self.virtual_batch_size))
        return torch.cat([F.batch_norm(chunk, self.running_mean, self.running_var, self.weight, self.bias,
                                       True, self.momentum, self.eps) for chunk in chunks])


@register_norm("ghost_batchnorm")
def ghost_batchnorm(num_channels: int, *, virtual_batch_size: int = 128, momentum: float = 0.1,
                    eps: float = 1e-5) -> nn.Module:
    check(isinstance(virtual_batch_size, int) and not isinstance(virtual_batch_size, bool)
          and virtual_batch_size >= 2, "virtual_batch_size", virtual_batch_size, "must be an integer >= 2")
    check_bn_params(momentum, eps)
    return GhostBatchNorm2d(num_channels, virtual_batch_size, eps=eps, momentum=momentum)


def train_only_batchnorm(model: nn.Module) -> None:
    """Freeze every parameter except BatchNorm's affine weight and bias (Frankle et al., 2021)."""
    batchnorm_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                        for p in m.parameters(recurse=False)}
    for param in model.parameters():
        param.requires_grad_(id(param) in batchnorm_params)


@register_norm("bn_only", prepare=train_only_batchnorm)
def bn_only(num_channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
    check_bn_params(momentum, eps)
    return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)
