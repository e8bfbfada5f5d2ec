"""Batch-statistics norms: BatchNorm, Ghost BatchNorm, and BatchNorm as the only trained layer."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import check
from regbench.norms.registry import register_norm
from regbench.runshape import RunShape, count_or_fraction
from regbench.specs.run_checks import MIN_STATISTICS_BATCH


@register_norm("batchnorm")
def batchnorm(num_channels: int, *, momentum: float, eps: float) -> nn.Module:
    return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over "ghost" batches of about `virtual_batch_size` samples (Hoffer et al., 2017).

    The batch is split into floor(B / virtual_batch_size) near-equal chunks, so no chunk is smaller than
    min(B, virtual_batch_size); each chunk is normalized with its own statistics and updates the running ones
    as one batch of nn.BatchNorm2d would, including its cumulative average when momentum is None (as SWA's
    BN recomputation sets it).
    """

    def __init__(self, num_channels: int, virtual_batch_size: int, **kw):
        super().__init__(num_channels, **kw)
        self.virtual_batch_size = virtual_batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        normalized = []
        for chunk in x.tensor_split(max(1, x.shape[0] // self.virtual_batch_size)):
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            normalized.append(F.batch_norm(chunk, self.running_mean, self.running_var, self.weight, self.bias,
                                           True, factor, self.eps))
        return torch.cat(normalized)


def fit_ghost_batches(params: dict, shape: RunShape) -> dict:
    return {"virtual_batch_size": count_or_fraction(params["virtual_batch_size"], shape.batch_size)}


@register_norm("ghost_batchnorm", fit_run=fit_ghost_batches)
def ghost_batchnorm(num_channels: int, *, virtual_batch_size: int, momentum: float,
                    eps: float) -> nn.Module:
    """`virtual_batch_size` in samples (the paper's 128); the config's default is a fraction of the batch, made
    absolute by `fit_ghost_batches` for the run before the layer is built."""
    check(isinstance(virtual_batch_size, int) and not isinstance(virtual_batch_size, bool)
          and virtual_batch_size >= MIN_STATISTICS_BATCH, "virtual_batch_size", virtual_batch_size,
          f"must be an integer >= {MIN_STATISTICS_BATCH}")
    return GhostBatchNorm2d(num_channels, virtual_batch_size, eps=eps, momentum=momentum)


def train_only_batchnorm(model: nn.Module) -> None:
    """Freeze every parameter except BatchNorm's affine weight and bias (Frankle et al., 2021)."""
    batchnorm_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                        for p in m.parameters(recurse=False)}
    for param in model.parameters():
        param.requires_grad_(id(param) in batchnorm_params)


@register_norm("bn_only", prepare=train_only_batchnorm)
def bn_only(num_channels: int, *, momentum: float, eps: float) -> nn.Module:
    return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)
