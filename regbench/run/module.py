"""The one LightningModule: backbone + norm + regularizers + optimizer + schedule."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from regbench.run.calibration import ReliabilityBins
from regbench.errors import TrainingDiverged
from regbench.optim import build_optimizer, build_schedule
from regbench.regularizers import Regularizer, TrainProgress, soft_cross_entropy

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
                 optim_cfg: Mapping[str, Any], sched_cfg: Mapping[str, Any], *,
                 class_weights: torch.Tensor | None = None, is_noisy: torch.Tensor | None = None):
        super().__init__()
        for reg in sorted(regularizers, key=lambda reg: reg.wraps_after_others):
            model = reg.wrap_model(model)
        self.model = model
        self.regularizers = regularizers
        # Stateful regularizers (EMA/SWA weights, ELR targets) are modules: registered here they follow the
        # device and are saved in checkpoints, so resumed runs keep them.
        self.regularizer_state = nn.ModuleDict({reg.name: reg for reg in regularizers if isinstance(reg, nn.Module)})
        self.num_classes = num_classes
        self.optim_cfg, self.sched_cfg = dict(optim_cfg), dict(sched_cfg)
        self.val_metrics = EvalMetrics(num_classes)
        self.test_metrics = EvalMetrics(num_classes)
        self.last_test_bins: dict[str, list[float]] | None = None
        # Test metrics are logged as `<test_prefix>_acc`, ...: "best_test" when the best checkpoint is tested.
        self.test_prefix = "test"
        self.test_per_class = MulticlassAccuracy(num_classes, average=None)
        self.last_test_per_class_acc: list[float] | None = None
        # Per-class loss weights (upweighting) and the per-training-sample "label was corrupted" mask, as
        # buffers so they follow the model to its device; indexed by each batch's sample index.
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.register_buffer("is_noisy", is_noisy, persistent=False)
        # The epoch's sums, kept on the device and read once per epoch, so the hot loop never waits for it. Plain
        # tensors rather than buffers: DDP broadcasts buffers from rank 0 before every step, which would replace
        # each rank's own sums with rank 0's. on_fit_start moves them to the device.
        self._train_loss_sum = torch.zeros(())
        self._train_correct = torch.zeros(())
        # [correct on clean, clean seen, correct on noisy, noisy seen] w.r.t. the given labels.
        self._noise_split_counts = torch.zeros(4)
        self.train_images_seen = 0
        # Set by the W&B dashboard for the first batch only: receives that batch as the network sees it (after
        # mix_batch), then is cleared, so later steps pay one `is None` check.
        self.batch_preview_sink: Callable[[torch.Tensor, torch.Tensor], None] | None = None

    @property
    def world_size(self) -> int:
        """DDP processes training this module (1 outside a Trainer, e.g. in unit tests)."""
        return self._trainer.world_size if self._trainer is not None else 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def eval_network(self) -> nn.Module:
        model = self.model
        for reg in self.regularizers:
            model = reg.eval_model(model)
        return model

    # --- training -------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # After a checkpoint's sums were loaded (a run resumed mid-epoch), so they keep their values.
        self._train_loss_sum = self._train_loss_sum.to(self.device)
        self._train_correct = self._train_correct.to(self.device)
        self._noise_split_counts = self._noise_split_counts.to(self.device)

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)
        self._train_loss_sum.zero_()
        self._train_correct.zero_()
        self._noise_split_counts.zero_()
        self.train_images_seen = 0

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, index = batch
        targets = F.one_hot(labels, self.num_classes).to(images.dtype)
        for reg in self.regularizers:
            images, targets = reg.mix_batch(images, targets, index)
        if self.batch_preview_sink is not None:
            self.batch_preview_sink(images, targets)
            self.batch_preview_sink = None
        logits = self.model(images)
        per_sample = soft_cross_entropy(logits, targets)
        if logits.dim() == 3:
            # Multi-sample dropout: (masks, B, C) logits, one loss per mask, averaged over the masks.
            per_sample, logits = per_sample.mean(dim=0), logits.mean(dim=0)
        for reg in self.regularizers:
            per_sample = reg.loss(per_sample, logits, targets, index, self.model)
        if self.class_weights is not None:
            per_sample = per_sample * self.class_weights[labels]
        loss = per_sample.mean()
        self.stop_if_diverged(loss, batch_idx)
        batch_size = labels.shape[0]
        correct = logits.detach().argmax(dim=-1) == labels
        self._train_loss_sum += loss.detach() * batch_size
        self._train_correct += correct.sum()
        if self.is_noisy is not None:
            noisy = self.is_noisy[index]
            self._noise_split_counts += torch.stack([(correct & ~noisy).sum(), (~noisy).sum(),
                                                     (correct & noisy).sum(), noisy.sum()]).to(torch.float32)
        self.train_images_seen += batch_size
        # Step values under their own name: `train_loss` in history.csv and W&B is the epoch's mean.
        self.log("train_loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=batch_size)
        if self._trainer is not None and self.trainer.progress_bar_callback is not None:
            # Only for the terminal's progress bar: nothing is logged, and non-terminal runs skip it.
            self.log("train_acc_step", correct.float().mean(), prog_bar=True, logger=False, on_step=True,
                     on_epoch=False, batch_size=batch_size)
        return loss

    def stop_if_diverged(self, loss: torch.Tensor, batch_idx: int) -> None:
        """A NaN or infinite loss ends the run at once, before the optimizer spreads it into the weights."""
        check = loss.detach()
        if self.world_size > 1:
            check = check.clone()  # the all-reduce works in place, and detach() shares the loss's storage
            # Every rank must stop at the same step, or the others would wait forever in the gradient all-reduce.
            check = self.trainer.strategy.reduce(check, reduce_op="sum")
        if not torch.isfinite(check):
            raise TrainingDiverged(f"the training loss became {float(check)} at epoch {self.current_epoch}, batch "
                                   f"{batch_idx}; lower optim.lr or check the data and regularizer settings")

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        progress = TrainProgress(epoch=self.current_epoch, max_epochs=self.trainer.max_epochs,
                                 epoch_finished=batch_idx + 1 == self.trainer.num_training_batches,
                                 train_batches=self.trainer.train_dataloader)
        for reg in self.regularizers:
            reg.on_train_batch_end(self.model, progress)

    def on_before_optimizer_step(self, optimizer) -> None:
        for reg in self.regularizers:
            reg.on_before_optimizer_step(optimizer)

    def on_train_epoch_end(self) -> None:
        for reg in self.regularizers:
            reg.on_epoch_end(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The running epoch's sums: a run resumed mid-epoch then reports the whole epoch, not its tail.
        checkpoint["regbench_epoch_sums"] = {
            "loss": self._train_loss_sum.cpu(), "correct": self._train_correct.cpu(),
            "noise_split": self._noise_split_counts.cpu(), "images": self.train_images_seen}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        sums = checkpoint.get("regbench_epoch_sums")
        if sums is not None:
            self._train_loss_sum.copy_(sums["loss"])
            self._train_correct.copy_(sums["correct"])
            self._noise_split_counts.copy_(sums["noise_split"])
            self.train_images_seen = sums["images"]

    def train_epoch_stats(self) -> dict[str, float]:
        """Training loss and accuracy of the epoch over all ranks' samples (read once per epoch)."""
        sums = torch.cat([self._train_loss_sum[None], self._train_correct[None], self._noise_split_counts,
                          torch.tensor([float(self.train_images_seen)], device=self._train_loss_sum.device)])
        if self.world_size > 1:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss_sum, correct, *noise_split, images = sums.tolist()
        seen = max(images, 1)
        stats = {"train_loss": loss_sum / seen, "train_acc": correct / seen, "train_images": int(images)}
        if self.is_noisy is not None:
            clean_correct, clean_seen, noisy_correct, noisy_seen = noise_split
            stats["train_acc_clean"] = clean_correct / clean_seen if clean_seen else float("nan")
            stats["train_acc_noisy"] = noisy_correct / noisy_seen if noisy_seen else float("nan")
        return stats

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
        images, labels, _ = batch
        last_batch = batch_idx + 1 == self.trainer.num_val_batches[0]
        for reg in self.regularizers:
            reg.on_validation_batch_end(self.model, images, labels, last_batch)

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels, _ = batch
        logits = self.eval_network()(images)
        self.test_metrics.update(logits, labels)
        self.test_per_class.update(logits, labels)
        self._log_metrics(self.test_prefix, self.test_metrics)

    def regularizer_reports(self, test_batches) -> dict[str, Any]:
        """Each regularizer's extra metrics.json entries (e.g. nested dropout's accuracy by width)."""
        reports: dict[str, Any] = {}
        for reg in self.regularizers:
            reports.update(reg.test_report(self.eval_network(), test_batches))
        return reports

    def on_test_epoch_end(self) -> None:
        self.last_test_bins = self.test_metrics.bins.compute()
        self.test_metrics.bins.reset()
        self.last_test_per_class_acc = self.test_per_class.compute().tolist()
        self.test_per_class.reset()

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.bins.reset()

    # --- optimization ---------------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.optim_cfg, self.model)
        for reg in self.regularizers:
            reg.configure_optimizer(optimizer)
        # Counted from the in-memory batches, not trainer.estimated_stepping_batches: that would set up the
        # training loader before a checkpoint's loader position is restored, and a resumed run would restart
        # the interrupted epoch from its first batch.
        steps_per_epoch = max(1, len(self.trainer.datamodule.train_dataloader()))
        total_steps = steps_per_epoch * self.trainer.max_epochs
        schedule = build_schedule(self.sched_cfg, optimizer, steps_per_epoch, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
