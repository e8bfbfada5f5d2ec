"""The run directory: resolved config, per-epoch history.csv, atomic metrics.json, checkpoints."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from regbench.errors import UserError

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "val_nll", "val_ece", "lr", "images_per_s",
                   "train_time_s", "epoch_time_s"]
VERSIONED_PACKAGES = ("regbench", "torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "timm", "numpy")
RESULT_FILES = ("config.yaml", "metrics.json", "history.csv")


def check_fresh_run_dir(run_dir: Path) -> None:
    taken = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if taken:
        raise UserError(f"hydra.run.dir={str(run_dir)!r} already holds a run ({taken[0]} exists); "
                        f"choose a new directory so no result is overwritten")


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def git_commit() -> str | None:
    """The commit of the regbench source tree, when it is a git checkout."""
    source = Path(__file__).resolve().parent.parent
    try:
        result = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class RunRecorder(L.Callback):
    """Appends one history.csv row per epoch and prints a plain progress line when not on a terminal."""

    def __init__(self, run_dir: Path, print_lines: bool, process_start: float):
        self.history_path = run_dir / "history.csv"
        self.print_lines = print_lines
        self.rows: list[dict[str, Any]] = []
        self.process_start = process_start
        self.fit_start = time.perf_counter()
        self.startup_s: float | None = None
        self._epoch_start = 0.0
        self._train_end: float | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()
        if self.startup_s is None:
            self.startup_s = self._epoch_start - self.process_start

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs this after the epoch's validation, so val metrics are in callback_metrics.
        now = time.perf_counter()
        epoch_time = now - self._epoch_start
        train_time = (self._train_end or now) - self._epoch_start
        self._train_end = None
        logged = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, **pl_module.train_epoch_stats(),
               **{k: float(logged[k]) for k in ("val_acc", "val_nll", "val_ece") if k in logged},
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               "images_per_s": pl_module.train_images_seen / max(train_time, 1e-9), "train_time_s": train_time,
               "epoch_time_s": epoch_time}
        self.rows.append(row)
        if trainer.is_global_zero:
            self._append_history(row)
            for logger in trainer.loggers:
                logger.log_metrics({k: v for k, v in row.items() if k.startswith(("train_", "images", "lr"))},
                                   step=trainer.global_step)
            if self.print_lines:
                self._print_line(trainer, row)

    def _append_history(self, row: dict[str, Any]) -> None:
        columns = HISTORY_COLUMNS + [k for k in row if k not in HISTORY_COLUMNS]
        new_file = not self.history_path.exists()
        with self.history_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def _print_line(self, trainer, row: dict[str, Any]) -> None:
        done = trainer.current_epoch + 1
        elapsed = time.perf_counter() - self.fit_start
        eta = elapsed / done * (trainer.max_epochs - done)
        print(f"epoch {done}/{trainer.max_epochs}  train_loss {row['train_loss']:.4f}  train_acc "
              f"{row['train_acc']:.4f}  val_acc {row.get('val_acc', float('nan')):.4f}  "
              f"{row['images_per_s']:.0f} img/s  ETA {eta:.0f}s", file=sys.stdout, flush=True)
