"""history.csv and the per-epoch progress line: one row per trained epoch, kept as callback state."""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from regbench.rundir_format import HISTORY_COLUMNS, HISTORY_FILE, write_text_atomic

# A file the first training epoch writes its start (Unix time) to, when set: start-up measured from outside the
# process (scripts/bench_startup.py), which can stop the run there. The run itself is unchanged.
STARTUP_MARK_ENV = "REGBENCH_STARTUP_MARK"


def history_csv(rows: list[dict[str, Any]]) -> str:
    columns = HISTORY_COLUMNS + [k for row in rows for k in row if k not in HISTORY_COLUMNS]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(columns)), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunRecorder(L.Callback):
    """Keeps one history row per epoch, rewrites history.csv atomically after each, and prints a plain progress
    line when not on a terminal. The rows are callback state: a checkpoint carries the history up to it, so a
    resumed run's history.csv holds exactly the epochs its weights have seen."""

    def __init__(self, run_dir: Path, print_lines: bool, process_start: float, writes: bool):
        self.history_path = run_dir / HISTORY_FILE
        self.print_lines, self.writes = print_lines, writes
        self.rows: list[dict[str, Any]] = []
        self.process_start = process_start
        self.fit_start = self._epoch_start = time.perf_counter()
        self._epochs_before_fit = 0
        self.startup_s: float | None = None
        self._train_end: float | None = None
        if writes and self.history_path.exists():
            # Left by an attempt that saved no checkpoint: its epochs are not the ones this run continues from.
            self.history_path.unlink()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])
        if self.writes:
            write_text_atomic(self.history_path, history_csv(self.rows))

    def on_fit_start(self, trainer, pl_module) -> None:
        # A run resumed mid-epoch starts its clock here: on_train_epoch_start is not called for that epoch.
        self.fit_start = self._epoch_start = time.perf_counter()
        self._epochs_before_fit = len(self.rows)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()
        if self.startup_s is None:
            self.startup_s = self._epoch_start - self.process_start
            mark = os.environ.get(STARTUP_MARK_ENV)
            if mark and trainer.is_global_zero:
                Path(mark).write_text(f"{time.time()}\n")

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
        stats = pl_module.train_epoch_stats()  # summed over DDP ranks
        row = {"epoch": trainer.current_epoch, **stats,
               **{k: float(logged[k]) for k in ("val_acc", "val_nll", "val_ece", "val_crafted_acc") if k in logged},
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               "images_per_s": stats["train_images"] / max(train_time, 1e-9), "train_time_s": train_time,
               "epoch_time_s": epoch_time}
        self.rows.append(row)
        if self.writes:
            write_text_atomic(self.history_path, history_csv(self.rows))
        if trainer.is_global_zero:
            logged = {k: v for k, v in row.items() if k.startswith(("train_", "images", "lr"))}
            for logger in trainer.loggers:
                logger.log_metrics({"epoch": row["epoch"], **logged}, step=trainer.global_step)
            if self.print_lines:
                self._print_line(trainer, row)

    def _print_line(self, trainer, row: dict[str, Any]) -> None:
        done = trainer.current_epoch + 1
        done_here = max(len(self.rows) - self._epochs_before_fit, 1)
        eta = (time.perf_counter() - self.fit_start) / done_here * (trainer.max_epochs - done)
        print(f"epoch {done}/{trainer.max_epochs}  train_loss {row['train_loss']:.4f}  train_acc "
              f"{row['train_acc']:.4f}  val_acc {row.get('val_acc', float('nan')):.4f}  "
              f"{row['images_per_s']:.0f} img/s  ETA {eta:.0f}s", file=sys.stdout, flush=True)
