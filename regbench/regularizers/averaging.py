"""Weight averaging evaluated in place of the trained network: EMA (per step) and SWA (per epoch).

Both are nn.Modules, so the averaged copy follows the model's device and is saved in (and restored from)
checkpoints with the LightningModule's state_dict.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn

from regbench.regularizers.base import Regularizer, TrainProgress
from regbench.specs.regularizers import REGULARIZERS
from regbench.specs.run_checks import ema_decay, swa_start_epoch


def frozen_copy(model: nn.Module) -> nn.Module:
    average = copy.deepcopy(model)
    average.requires_grad_(False)
    return average


@torch.no_grad()
def ema_update_(average: nn.Module, model: nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * x for every float tensor of the state (parameters and buffers, as
    timm's ModelEmaV3); integer buffers (BN's batch counter) are copied."""
    for avg, value in zip(average.state_dict().values(), model.state_dict().values()):
        if avg.is_floating_point():
            avg.lerp_(value.to(avg.dtype), 1.0 - decay)
        else:
            avg.copy_(value)


@REGULARIZERS.register("ema")
class EMA(Regularizer, nn.Module):
    """Exponential moving average of the weights, updated after every optimizer step; evaluation uses it."""

    name = "ema"

    def __init__(self, *, decay: float, warmup: bool, warmup_gamma: float,
                 warmup_power: float, seed: int):
        super().__init__()
        self.decay, self.warmup = float(decay), warmup
        self.warmup_gamma, self.warmup_power = float(warmup_gamma), float(warmup_power)
        self.average: nn.Module | None = None
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def decay_at(self, step: int) -> float:
        return ema_decay(step, self.decay, self.warmup, self.warmup_gamma, self.warmup_power)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.average = frozen_copy(model)
        return model

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        self.num_updates += 1
        ema_update_(self.average, model, self.decay_at(int(self.num_updates)))

    def eval_model(self, model: nn.Module) -> nn.Module:
        return self.average if int(self.num_updates) > 0 else model


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable) -> None:
    """torch.optim.swa_utils.update_bn on (images, labels, index) batches: reset every BN layer's running
    statistics and re-estimate them as a cumulative average (momentum=None) over one pass in train mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    for images, *_ in batches:
        model(images)
    for m, momentum in momenta.items():
        m.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def swa_update_(average: nn.Module, model: nn.Module, num_averaged: int) -> None:
    """Equal-weight running mean of the parameters: avg <- avg + (x - avg) / (n + 1) (Izmailov et al.,
    2018, Alg. 1; torch AveragedModel's default)."""
    for avg, value in zip(average.parameters(), model.parameters()):
        avg.add_((value.detach() - avg) / (num_averaged + 1))


@REGULARIZERS.register("swa")
class SWA(Regularizer, nn.Module):
    """Average of the weights at the end of every epoch from `start` (a fraction of the epochs) on; BN
    statistics of the average recomputed on the training data after each update; evaluation uses it."""

    name = "swa"

    def __init__(self, *, start: float, seed: int):
        super().__init__()
        self.start = float(start)
        self.average: nn.Module | None = None
        self.register_buffer("num_averaged", torch.zeros((), dtype=torch.long))

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.average = frozen_copy(model)
        return model

    def start_epoch(self, max_epochs: int) -> int:
        return swa_start_epoch(self.start, max_epochs)

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        if not progress.epoch_finished or progress.epoch < self.start_epoch(progress.max_epochs):
            return
        swa_update_(self.average, model, int(self.num_averaged))
        self.num_averaged += 1
        recompute_bn(self.average, progress.train_batches)

    def eval_model(self, model: nn.Module) -> nn.Module:
        return self.average if int(self.num_averaged) > 0 else model


__all__ = ["EMA", "SWA", "ema_decay", "ema_update_", "recompute_bn", "swa_update_"]
