"""The one LightningModule: backbone + norm + regularizers + optimizer + schedule."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from regbench.calibration.bins import ECE_BINS, ReliabilityBins
from regbench.run.epoch_sums import TrainEpochSums
from regbench.run.finite_check import LaggedFiniteCheck
from regbench.optim import build_optimizer, build_schedule, projects_weights
from regbench.regularizers import Regularizer, TrainProgress, soft_cross_entropy
from regbench.specs.regularizers import Exclusion
from regbench.optim.projection import attach_projection, weights_feeding_norms


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


def upgrade_epoch_sums(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before the epoch sums were a Metric kept them beside the state dict: moved into it, so
    runs interrupted under an earlier regbench still resume (and their best.ckpt still loads)."""
    sums = checkpoint.pop("regbench_epoch_sums", None)
    if sums is not None:
        checkpoint["state_dict"].update({
            "train_sums.loss_sum": sums["loss"].float(), "train_sums.correct": sums["correct"].long(),
            "train_sums.images": torch.tensor(sums["images"]), "train_sums.noise_split": sums["noise_split"].long()})
    return checkpoint


def upgrade_step_count(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written under Lightning's automatic optimization counted the optimizer steps (the global step)
    there: the count is moved to manual optimization's counter, which the module now uses, so a run interrupted
    under an earlier regbench resumes at its global step (loggers' step axes must not restart at 0)."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = loops.get("epoch_loop.automatic_optimization.optim_progress")
    manual = loops.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic is not None and manual is not None and manual["total"]["completed"] == 0:
        steps = automatic["optimizer"]["step"]
        for counter in ("total", "current"):
            manual[counter] = {"ready": steps[counter]["ready"], "completed": steps[counter]["completed"]}
    return checkpoint


def writes_logs_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes the current training step's logged values to the loggers: every
    `log_every_n_steps`-th optimizer step, counted from 1 (asked during the step, before it counts), and the step
    where the run stops."""
    every = trainer.log_every_n_steps
    return every > 0 and ((trainer.global_step + 1) % every == 0 or trainer.should_stop)


class ClassifierModule(L.LightningModule):
    def __init__(self, model: nn.Module, regularizers: list[Regularizer], num_classes: int,
                 optim_cfg: Mapping[str, Any], sched_cfg: Mapping[str, Any], *,
                 class_weights: torch.Tensor | None = None, is_noisy: torch.Tensor | None = None,
                 channels_last: bool = False, compile_model: bool = False):
        super().__init__()
        for reg in sorted(regularizers, key=lambda reg: (reg.wraps_after_others, reg.copies_network)):
            model = reg.wrap_model(model)
        # channels_last: 4-D weights and batches in NHWC order, which GPU convolution kernels prefer.
        self.memory_format = torch.channels_last if channels_last else None
        if self.memory_format is not None:
            model = model.to(memory_format=self.memory_format)
        if compile_model:
            model.compile()  # in place: the state dict keeps its keys, so checkpoints load either way
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
        # The epoch's sums stay on the device and are read once per epoch, so the hot loop never waits for it.
        self.train_sums = TrainEpochSums()
        self.finite_check = LaggedFiniteCheck()
        # Set by the W&B dashboard for the first batch only: receives that batch as the network sees it (after
        # mix_batch), then is cleared, so later steps pay one `is None` check.
        self.batch_preview_sink: Callable[[torch.Tensor, torch.Tensor], None] | None = None
        # The step is written out in training_step (see `optimize`): Lightning's automatic optimization wraps it in
        # a closure and per-step hook walks that cost a small model's step a few per cent (BENCHMARKS.md).
        self.automatic_optimization = False

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

    def ood_method_score(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The score of the run's trained OOD method (eval=[ood]'s `method`; the config checks ensure there is one)."""
        method, = (reg for reg in self.regularizers if Exclusion.OOD_METHOD in reg.exclusive)
        return method.ood_score(network, images)

    # --- training -------------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)
        self.train_sums.reset()

    def reduced_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Training logits reduced to (B, C) by the regularizers that widen them (multi-sample dropout)."""
        for reg in self.regularizers:
            logits = reg.reduce_logits(logits)
        return logits

    def training_network(self, images: torch.Tensor) -> torch.Tensor:
        """The network in training with (B, C) logits, for regularizers' extra forward passes."""
        return self.reduced_logits(self.model(self.in_memory_format(images)))

    def in_memory_format(self, images: torch.Tensor) -> torch.Tensor:
        if self.memory_format is None or images.dim() != 4:
            return images
        return images.contiguous(memory_format=self.memory_format)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch, batch_idx)
        self.optimize(loss)
        return loss.detach()

    def training_loss(self, batch, batch_idx: int) -> torch.Tensor:
        """The step's loss (after mixing, regularizers and class weights), counted in the epoch's sums, queued for the
        finite check and logged where shown; the optimizer step is `optimize`'s."""
        images, labels, index = batch
        targets = F.one_hot(labels, self.num_classes).to(images.dtype)
        for reg in self.regularizers:
            images, targets = reg.mix_batch(images, targets, index)
        if self.batch_preview_sink is not None:
            self.batch_preview_sink(images, targets)
            self.batch_preview_sink = None
        # After mix_batch: elementwise mixing with NCHW masks may return NCHW batches.
        raw_logits = self.model(self.in_memory_format(images))
        logits = self.reduced_logits(raw_logits)
        per_sample = self.task_loss(raw_logits, logits, targets)
        for reg in self.regularizers:
            per_sample = reg.loss(per_sample, logits, targets, index, self.training_network)
        if self.class_weights is not None:
            per_sample = per_sample * self.class_weights[labels]
        loss = per_sample.mean()
        correct = logits.detach().argmax(dim=-1) == labels
        self.stop_if_diverged(loss, correct, batch_idx)
        self.train_sums.update(loss, correct, self.is_noisy[index] if self.is_noisy is not None else None)
        self.log_step(loss, labels.shape[0])
        return loss

    def optimize(self, loss: torch.Tensor) -> None:
        """One optimizer step on `loss`, in automatic optimization's order (zero the gradients, backward, step, then
        the step-interval schedule). Lightning's optimizer wrapper still runs the precision plugin (16-mixed's
        gradient scaling), the on_before_optimizer_step hooks and counts the global step."""
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.lr_schedulers().step()

    def task_loss(self, raw_logits: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the (B, C) logits, unless a regularizer that widens them (multi-sample dropout) computes
        the per-sample loss from its own."""
        for reg in self.regularizers:
            per_sample = reg.task_loss(raw_logits, targets)
            if per_sample is not None:
                return per_sample
        return soft_cross_entropy(logits, targets)

    def log_step(self, loss: torch.Tensor, batch_size: int) -> None:
        """The step's loss as `train_loss_step` (history.csv's and W&B's `train_loss` is the epoch's mean), only on
        the steps where Lightning writes to the loggers: each self.log costs a walk over Lightning's result
        collection, and a read of the value on the host (a wait for the device). A terminal's progress bar shows
        the values the finite check has read anyway (StepValuesBar)."""
        if self._trainer is None:
            return
        trainer = self.trainer
        if not (trainer.loggers and writes_logs_this_step(trainer)):
            return
        self.log("train_loss_step", loss, on_step=True, on_epoch=False, batch_size=batch_size)

    def stop_if_diverged(self, loss: torch.Tensor, correct: torch.Tensor, batch_idx: int) -> None:
        """A NaN or infinite loss ends the run (see regbench.run.finite_check): this step's loss (and its `correct`
        predictions, for the progress bar) is queued and the previous step's checked, so the step never waits for
        the device. Under DDP the loss is summed over the ranks first: every rank must stop at the same step, or the
        others would wait forever in the gradient all-reduce."""
        reduce = None
        if self.world_size > 1:
            reduce = lambda value: self.trainer.strategy.reduce(value, reduce_op="sum")  # noqa: E731
        self.finite_check.push(loss, self.current_epoch, batch_idx, reduce, correct=correct, ranks=self.world_size)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if not self.regularizers:
            return  # nothing to tell: a plain run builds no progress record per step
        steps_per_epoch = self.trainer.num_training_batches
        progress = TrainProgress(epoch=self.current_epoch, max_epochs=self.trainer.max_epochs,
                                 epoch_finished=batch_idx + 1 == steps_per_epoch,
                                 step=self.current_epoch * steps_per_epoch + batch_idx + 1,
                                 total_steps=steps_per_epoch * self.trainer.max_epochs,
                                 train_batches=self.trainer.train_dataloader)
        for reg in self.regularizers:
            reg.on_train_batch_end(self.model, progress)

    def on_before_optimizer_step(self, optimizer) -> None:
        for reg in self.regularizers:
            reg.on_before_optimizer_step(optimizer)

    def on_train_epoch_end(self) -> None:
        for reg in self.regularizers:
            reg.on_epoch_end(self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self.finite_check.flush()  # validation never sees weights that a non-finite loss changed

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_check.flush()  # nor does a checkpoint
        # The running epoch's sums are in the state dict (TrainEpochSums): a run resumed mid-epoch then reports the
        # whole epoch, not its tail.

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        upgrade_epoch_sums(checkpoint)
        upgrade_step_count(checkpoint)

    def train_epoch_stats(self) -> dict[str, float]:
        """Training loss and accuracy of the epoch over all ranks' samples (read once per epoch)."""
        self.finite_check.flush()
        stats = self.train_sums.compute()
        if self.is_noisy is None:
            del stats["train_acc_clean"], stats["train_acc_noisy"]
        return stats

    # --- evaluation -----------------------------------------------------------------------------------------
    def _evaluate(self, batch, metrics: EvalMetrics) -> None:
        images, labels, _ = batch
        metrics.update(self.eval_network()(self.in_memory_format(images)), labels)

    def _log_metrics(self, prefix: str, metrics: EvalMetrics) -> None:
        """Once per evaluation, at its end: Lightning computes the metrics then and resets them (logging them at
        every step would walk Lightning's result collection at every step for the same values)."""
        self.log_dict({f"{prefix}_acc": metrics.acc, f"{prefix}_nll": metrics.nll, f"{prefix}_ece": metrics.ece},
                      prog_bar=prefix == "val", on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)
        images, labels, _ = batch
        last_batch = batch_idx + 1 == self.trainer.num_val_batches[0]
        for reg in self.regularizers:
            reg.on_validation_batch_end(self.model, images, labels, last_batch)

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels, _ = batch
        logits = self.eval_network()(self.in_memory_format(images))
        self.test_metrics.update(logits, labels)
        self.test_per_class.update(logits, labels)

    def regularizer_reports(self, test_batches, val_batches, train_batches: Callable[[], Any]) -> dict[str, Any]:
        """Each regularizer's extra metrics.json entries (e.g. nested dropout's accuracy by width, the IPR pruning
        curves); `train_batches()` builds the unaugmented training batches for the reports that need them."""
        reports: dict[str, Any] = {}
        for reg in self.regularizers:
            reports.update(reg.test_report(self.eval_network(), test_batches, val_batches))
            reports.update(reg.train_report(self.eval_network(), test_batches, train_batches, self.is_noisy))
        return reports

    @torch.no_grad()
    def split_logits(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluated network's float logits and the labels of a whole split, on the module's device (for
        post-hoc calibration, which fits on the validation split and is applied to the test split)."""
        network = self.eval_network()
        was_training = network.training
        network.eval()
        try:
            pairs = [(network(self.in_memory_format(images.to(self.device))).float(), labels.to(self.device))
                     for images, labels, _ in batches]
        finally:
            network.train(was_training)
        return torch.cat([logits for logits, _ in pairs]), torch.cat([labels for _, labels in pairs])

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_prefix, self.test_metrics)
        self.last_test_bins = self.test_metrics.bins.compute()
        self.test_metrics.bins.reset()
        self.last_test_per_class_acc = self.test_per_class.compute().tolist()
        self.test_per_class.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)
        self.val_metrics.bins.reset()
        # Only regbench's datamodules craft shifted validation sets (a Trainer may validate plain loaders).
        crafted = getattr(self.trainer.datamodule, "crafted_val_batches", None)
        if crafted:
            self.log("val_crafted_acc", self.crafted_accuracy(crafted), prog_bar=True, on_step=False, on_epoch=True)

    @torch.no_grad()
    def crafted_accuracy(self, crafted: Mapping[str, Any]) -> torch.Tensor:
        """Crafted-shift validation accuracy: the mean over the validated shift types of the accuracy on the
        validation split shifted by each. Every DDP rank evaluates the whole (unsharded) sets, so all log one value.
        Outside the validation steps, so the trainer's precision (bf16-true, 64-true) is applied here."""
        network = self.eval_network()
        precision = self.trainer.precision_plugin if self._trainer is not None else None
        accuracies = []
        for batches in crafted.values():
            correct = sum((self.predicted(network, images, precision) == labels).sum() for images, labels, _ in batches)
            accuracies.append(correct / len(batches.labels))
        return torch.stack(accuracies).float().mean()

    def predicted(self, network: nn.Module, images: torch.Tensor, precision) -> torch.Tensor:
        if precision is None:
            return network(self.in_memory_format(images)).argmax(dim=-1)
        with precision.forward_context():
            return network(self.in_memory_format(precision.convert_input(images))).argmax(dim=-1)

    # --- optimization ---------------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(self.optim_cfg, self.model)
        if projects_weights(self.optim_cfg):
            datamodule = self.trainer.datamodule
            example = torch.randn(datamodule.batch_size, *datamodule.image_shape, device=self.device)
            attach_projection(optimizer, weights_feeding_norms(self.model, example))
        for reg in self.regularizers:
            reg.configure_optimizer(optimizer)
        # Counted from the in-memory batches, not trainer.estimated_stepping_batches: that would set up the
        # training loader before a checkpoint's loader position is restored, and a resumed run would restart
        # the interrupted epoch from its first batch.
        steps_per_epoch = max(1, len(self.trainer.datamodule.train_dataloader()))
        total_steps = steps_per_epoch * self.trainer.max_epochs
        schedule = build_schedule(self.sched_cfg, optimizer, steps_per_epoch, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
