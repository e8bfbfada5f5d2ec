"""init.freeze_bn_stats: the norm layers that normalize by batch statistics stay in evaluation mode while the
network trains, so they normalize by the running statistics they were loaded with and never update them (the
official Nested Co-teaching's --freeze-bn); their affine parameters still train."""
from __future__ import annotations

import lightning as L
import torch.nn as nn

from regbench.norms import uses_batch_statistics


class FrozenNormStatistics(L.Callback):
    def __init__(self):
        self.norms: list[nn.Module] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.norms = [module for module in pl_module.model.modules() if uses_batch_statistics(module)]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        # Lightning puts the whole module back in training mode at each epoch's start and after each validation.
        for norm in self.norms:
            norm.eval()
