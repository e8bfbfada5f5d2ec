"""What a run shows in W&B beyond its scalar curves: the epoch-level metrics on an `epoch` axis with best-value
summaries (so the runs table sorts by the right number), the test set's reliability diagram and per-class accuracy,
the memorization curves of a noisy-label run, and the first training batch as the network saw it (after the
regularizers' mixing and erasing), captured once. Rank 0 logs it all."""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from regbench.rundir_format import better_direction

EPOCH_AXIS = "epoch"
# What the recorder and Lightning log once per epoch: charted against the epoch rather than the step.
EPOCH_METRICS = ("train_loss", "train_acc", "train_acc_clean", "train_acc_noisy", "train_images", "train_time_s",
                 "images_per_s", "lr", "val_acc", "val_nll", "val_ece", "val_crafted_acc")
# A handful of images shows what CutMix or Cutout did; more would only slow the page.
PREVIEW_IMAGES = 16
# W&B shows media at their pixel size: smaller images (8x8 digits) are enlarged to at least this side.
PREVIEW_MIN_SIDE = 64
# Mixing blends two samples' labels: a caption names the two largest target weights.
CAPTION_LABELS = 2
# The accuracy on the noisy samples' given (wrong) labels measures memorization: none of its values is the best.
WITHOUT_BEST = ("train_acc_noisy",)
# Keys of the logged media, one panel section per prefix.
FIRST_BATCH, MEMORIZATION = "train/first_batch", "train/memorization"
RELIABILITY, RELIABILITY_DIAGRAM = "test/reliability", "test/reliability_diagram"
PER_CLASS, PER_CLASS_BARS = "test/per_class_acc", "test/per_class_acc_bars"


def summary_ops(metric: str) -> str | None:
    """The best value (min or max, by the metric's direction) and the last one; None keeps W&B's default (last)."""
    direction = None if metric in WITHOUT_BEST else better_direction(metric)
    return f"{direction},last" if direction else None


def define_epoch_metrics(run) -> None:
    run.define_metric(EPOCH_AXIS)
    for name in EPOCH_METRICS:
        run.define_metric(name, step_metric=EPOCH_AXIS, summary=summary_ops(name))


def preview_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalized (N, C, H, W) images back to uint8 pixels, (N, H, W, C), nearest-neighbour enlarged to at least
    PREVIEW_MIN_SIDE; the inverse of the data module's `(pixels / 255 - mean) / std`."""
    channels = images.shape[1]
    pixels = (images.float().cpu() * torch.tensor(std).view(1, channels, 1, 1)
              + torch.tensor(mean).view(1, channels, 1, 1)) * 255
    pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    scale = -(-PREVIEW_MIN_SIDE // min(pixels.shape[-2:]))  # ceiling division
    pixels = pixels.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return pixels.permute(0, 2, 3, 1).numpy()


def target_caption(target: torch.Tensor, classes: Sequence[str]) -> str:
    """The target's largest weights as `label weight`, e.g. `7 0.62 + 3 0.38` for a CutMix of a 7 and a 3."""
    weights, labels = target.float().topk(min(CAPTION_LABELS, target.numel()))
    return " + ".join(f"{classes[label]} {weight:.2f}" for weight, label in zip(weights.tolist(), labels.tolist())
                      if weight > 0)


def reliability_rows(bins: dict[str, list[float]]) -> list[list[Any]]:
    """Per confidence bin: its edges, sample count, mean confidence and accuracy (None for an empty bin)."""
    edges = bins["bin_edges"]
    rows = []
    for index, (count, confidence, accuracy) in enumerate(zip(bins["bin_count"], bins["bin_conf"], bins["bin_acc"])):
        filled = count > 0
        rows.append([edges[index], edges[index + 1], int(count), confidence if filled else None,
                     accuracy if filled else None])
    return rows


class WandbDashboard(L.Callback):
    """Logs a run's dashboard extras to its W&B run (rank 0 only)."""

    def __init__(self, logger, datamodule, recorder):
        self.logger, self.recorder = logger, recorder
        self.mean, self.std = datamodule.mean.flatten().tolist(), datamodule.std.flatten().tolist()
        self.classes = datamodule.classes
        self._first_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # Here, not in on_fit_start: a resumed run's epoch counter is restored only after that.
        if not trainer.is_global_zero:
            return
        define_epoch_metrics(self.logger.experiment)
        if trainer.current_epoch == 0:
            # The module hands over one batch, then forgets this; later steps pay nothing.
            pl_module.batch_preview_sink = self._keep_first_batch

    def _keep_first_batch(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self._first_batch = images[:PREVIEW_IMAGES].detach().cpu(), targets[:PREVIEW_IMAGES].detach().cpu()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._first_batch is None or not trainer.is_global_zero:
            return
        import wandb

        images, targets = self._first_batch
        self._first_batch = None
        media = [wandb.Image(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels,
                             caption=target_caption(target, self.classes))
                 for pixels, target in zip(preview_pixels(images, self.mean, self.std), targets)]
        self.logger.experiment.log({FIRST_BATCH: media, EPOCH_AXIS: trainer.current_epoch})

    def on_fit_end(self, trainer, pl_module) -> None:
        rows = [row for row in self.recorder.rows if "train_acc_clean" in row]
        if not rows or not trainer.is_global_zero:
            return
        import wandb

        chart = wandb.plot.line_series(
            xs=[row["epoch"] for row in rows], ys=[[row["train_acc_clean"] for row in rows],
                                                   [row["train_acc_noisy"] for row in rows]],
            keys=["clean samples", "noisy samples (fit to the wrong label)"], xname=EPOCH_AXIS,
            title="memorization: train accuracy w.r.t. the given labels")
        self.logger.experiment.log({MEMORIZATION: chart})

    def on_test_end(self, trainer, pl_module) -> None:
        # The final model's test (best_test_* is the best checkpoint's): what metrics.json's calibration holds.
        if pl_module.test_prefix != "test" or not trainer.is_global_zero:
            return
        import wandb

        rows = reliability_rows(pl_module.last_test_bins)
        reliability = wandb.Table(columns=["bin_low", "bin_high", "count", "confidence", "accuracy"], data=rows)
        filled = [row for row in rows if row[2] > 0]
        diagram = wandb.plot.line_series(
            xs=[[row[3] for row in filled], [0.0, 1.0]], ys=[[row[4] for row in filled], [0.0, 1.0]],
            keys=["final model", "perfect calibration"], xname="confidence",
            title="reliability diagram (test set, accuracy per confidence bin)")
        per_class = wandb.Table(columns=["class", "accuracy"],
                                data=[[name, accuracy] for name, accuracy in
                                      zip(self.classes, pl_module.last_test_per_class_acc)])
        self.logger.experiment.log({
            RELIABILITY: reliability, RELIABILITY_DIAGRAM: diagram, PER_CLASS: per_class,
            PER_CLASS_BARS: wandb.plot.bar(per_class, "class", "accuracy", title="test accuracy per class")})
