"""Norm statistics recomputed for averaged weights: the averaged running means and variances are not the
statistics of the averaged network's own activations, so every BatchNorm is reset and sees the whole training
split once in training mode with momentum=None (PyTorch's cumulative average), without gradients or
augmentation, the rest of the network in evaluation mode (no dropout); its running statistics are then the mean of
the per-batch statistics over the training data."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.norms import uses_batch_statistics


def recomputable(module: nn.Module) -> bool:
    """A BatchNorm whose forward is PyTorch's own, which implements momentum=None as the cumulative average."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and \
        type(module).forward is nn.modules.batchnorm._BatchNorm.forward


def check_recomputable(model: nn.Module, norm_name: str) -> None:
    for name, module in model.named_modules():
        if uses_batch_statistics(module) and not recomputable(module):
            raise UserError(f"norm={norm_name!r} keeps running statistics in {name} ({type(module).__name__}) "
                            f"that a soup cannot recompute; soups take batch-independent norms or norm=batchnorm")


@torch.no_grad()
def recompute_batch_statistics(model: nn.Module, batches: Iterable) -> int:
    """Reset and recompute every BatchNorm's running statistics over `batches` (images, labels, ...); returns how
    many norms were recomputed (0: nothing to do, the batches are not read)."""
    norms = [module for module in model.modules() if recomputable(module) and module.track_running_stats]
    if not norms:
        return 0
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.eval()
    for norm in norms:
        norm.train()
    try:
        for images, *_ in batches:
            model(images)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
    return len(norms)
