"""The one LightningModule: backbone + norm + regularizers + optimizer + schedule."""
from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from regbench.calibration import ReliabilityBins
from regbench.optim import build_optimizer, build_schedule
from regbench.regularizers import Regularizer, soft_cross_entropy

ECE_BINS = 15


class EvalMetrics(nn.Module):
    """Accuracy, NLL, ECE and reliability bins for one evaluation split."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.acc = MulticlassAccuracy(num_classes, average="micro")
        self.nll = MeanMetric()
        self.ece = MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1")
        self.bins = ReliabilityBins(ECE_BINS)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        probs = logits.float().softmax(dim=-1)
        self.acc.update(probs, labels)
        self.nll.update(F.cross_entropy(logits.float(), labels, reduction="none"))
        self.ece.update(probs, labels)
        self.bins.update(probs, labels)


class ClassifierModule(L.LightningModule):
    def __init__(self, model: nn.Module, regularizers: list[Regularizer], num_classes: int,
                 optim_cfg: Mapping[str, Any], sched_cfg: Mapping[str, Any]):
        super().__init__()
        for reg in regularizers:
            model = reg.wrap_model(model)
        self.model = model
        self.regularizers = regularizers
        self.num_classes = num_classes
        self.optim_cfg, self.sched_cfg = dict(optim_cfg), dict(sched_cfg)
        self.val_metrics = EvalMetrics(num_classes)
        self.test_metrics = EvalMetrics(num_classes)
        self.last_test_bins: dict[str, list[float]] | None = None
        # Summed on the device and read once per epoch, so the hot loop never waits for the device.
        self.register_buffer("_train_loss_sum", torch.zeros(()), persistent=False)
        self.register_buffer("_train_correct", torch.zeros(()), persistent=False)
        self.train_images_seen = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def eval_network(self) -> nn.Module:
        model = self.model
        for reg in self.regularizers:
            model = reg.eval_model(model)
        return model

    # --- training -------------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)
        self._train_loss_sum.zero_()
        self._train_correct.zero_()
        self.train_images_seen = 0

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, index = batch
        targets = F.one_hot(labels, self.num_classes).to(images.dtype)
        for reg in self.regularizers:
            images, targets = reg.mix_batch(images, targets, index)
        logits = self.model(images)
        per_sample = soft_cross_entropy(logits, targets)
        if logits.dim() == 3:
            # Multi-sample dropout: (masks, B, C) logits, one loss per mask, averaged over the masks.
            per_sample, logits = per_sample.mean(dim=0), logits.mean(dim=0)
        for reg in self.regularizers:
            per_sample = reg.loss(per_sample, logits, targets, index, self.model)
        loss = per_sample.mean()
        batch_size = labels.shape[0]
        self._train_loss_sum += loss.detach() * batch_size
        self._train_correct += (logits.detach().argmax(dim=-1) == labels).sum()
        self.train_images_seen += batch_size
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        return loss

    def on_train_epoch_end(self) -> None:
        for reg in self.regularizers:
            reg.on_epoch_end(self.current_epoch)

    def train_epoch_stats(self) -> dict[str, float]:
        seen = max(self.train_images_seen, 1)
        return {"train_loss": float(self._train_loss_sum) / seen, "train_acc": float(self._train_correct) / seen}

    # --- evaluation -----------------------------------------------------------------------------------------
    def _evaluate(self, batch, metrics: EvalMetrics) -> None:
        images, labels, _ = batch
        metrics.update(self.eval_network()(images), labels)

    def _log_metrics(self, prefix: str, metrics: EvalMetrics) -> None:
        self.log_dict({f"{prefix}_acc": metrics.acc, f"{prefix}_nll": metrics.nll, f"{prefix}_ece": metrics.ece},
                      prog_bar=prefix == "val", on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)
        self._log_metrics("val", self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)
        self._log_metrics("test", self.test_metrics)

    def regularizer_reports(self, test_batches) -> dict[str, Any]:
        """Each regularizer's extra metrics.json entries (e.g. nested dropout's accuracy by width)."""
        reports: dict[str, Any] = {}
        for reg in self.regularizers:
            reports.update(reg.test_report(self.eval_network(), test_batches))
        return reports

    def on_test_epoch_end(self) -> None:
        self.last_test_bins = self.test_metrics.bins.compute()
        self.test_metrics.bins.reset()

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.bins.reset()

    # --- optimization ---------------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.optim_cfg, self.model)
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs))
        schedule = build_schedule(self.sched_cfg, optimizer, steps_per_epoch, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
