"""The run directory: resolved config, per-epoch history.csv, atomic metrics.json, checkpoints."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import OmegaConf

from regbench.describe import config_hash
from regbench.errors import UserError

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "val_nll", "val_ece", "lr", "images_per_s",
                   "train_time_s", "epoch_time_s"]
VERSIONED_PACKAGES = ("regbench", "torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "timm", "numpy")
RESULT_FILES = ("config.yaml", "metrics.json", "history.csv")
# metrics.json's status while an attempt is under way: not completed, and if it is still there at the next start,
# that attempt was killed.
RUNNING = "running"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"  # where a relaunch resumes: the end of the last (n-th) epoch, or a SIGTERM point
PREVIOUS_CHECKPOINT = "previous.ckpt"  # the last.ckpt it replaced: the fallback when last.ckpt is unreadable
BEST_CHECKPOINT = "best.ckpt"  # the best-validation epoch, tested at the end for best_test_*


@dataclass(frozen=True)
class Resumption:
    """What a run directory already holds for a start with the same config."""

    completed: dict[str, Any] | None = None  # metrics.json of a finished run: nothing is left to do
    checkpoint: Path | None = None  # the last checkpoint of an unfinished run: training continues from it
    attempts: tuple[dict[str, Any], ...] = ()  # how earlier attempts ended; kept in the next metrics.json
    notice: str | None = None  # one line for the user: an unreadable checkpoint and what is done about it


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def stored_config_hash(run_dir: Path) -> str | None:
    try:
        stored = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)
    except Exception:  # noqa: BLE001  (any unreadable file means "not the same run")
        return None
    return config_hash(stored) if isinstance(stored, dict) else None


def check_output_dir(path: Path, key: str) -> None:
    """Refuse, before Hydra tries to create it, an output directory that cannot be created and written: a path
    that is or passes through a file, or one under a directory this process may not write (a read-only mount)."""
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == path else "lies under"
        raise UserError(f"{key}={str(path)!r} is invalid: it {what} {str(existing)!r}, which is not a directory; "
                        f"choose another directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={str(path)!r} is invalid: {str(existing)!r} is not writable here; choose a "
                        f"directory you can write")


def inspect_run_dir(run_dir: Path, config_hash_: str, dir_key: str = "hydra.run.dir") -> Resumption:
    """Decide how a start with config hash `config_hash_` may use `run_dir`: fresh, skip, or resume.

    A directory holding a run with another config is refused, so no result is ever overwritten.
    """
    taken = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if not taken:
        return Resumption()
    if stored_config_hash(run_dir) != config_hash_:
        raise UserError(f"{dir_key}={str(run_dir)!r} already holds a run with another config ({taken[0]} "
                        f"exists); choose a new directory so no result is overwritten")
    metrics = read_json(run_dir / "metrics.json")
    if metrics is not None and metrics.get("status") == "completed":
        return Resumption(completed=metrics)
    if metrics is None:
        last = {"status": "killed", "error": "ended without writing metrics.json (killed, or the machine stopped)"}
    elif metrics.get("status") == RUNNING:
        last = {"status": "killed", "error": "ended while running (killed, or the machine stopped)"}
    else:
        last = {key: metrics.get(key) for key in ("status", "error", "wall_time_s", "epochs")}
    earlier = tuple(metrics.get("attempts", [])) if metrics else ()
    checkpoint, notice = resume_checkpoint(run_dir / CHECKPOINT_DIR)
    return Resumption(checkpoint=checkpoint, attempts=(*earlier, last), notice=notice)


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be loaded, or None when it is whole. torch.save writes a zip archive
    whose directory is at its end and whose entries carry CRC-32 checksums: reading it through finds a file that
    is empty, cut short, or damaged anywhere; torch then opens it as Lightning will (memory-mapped, so the weights
    are not read a second time)."""
    try:
        if path.stat().st_size == 0:
            return "an empty file"
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged:
            return f"its entry {damaged} is damaged"
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001  (damaged bytes can fail in any way; each means "unreadable")
        # The first sentence: torch's reader adds a paragraph of advice.
        first = str(err).strip().split("\n")[0].split(". ")[0]
        return f"{type(err).__name__}: {first}" if first else type(err).__name__
    return None


def resume_checkpoint(checkpoints: Path) -> tuple[Path | None, str | None]:
    """The checkpoint an unfinished run resumes from: last.ckpt, or previous.ckpt when last.ckpt is unreadable
    (or missing after a kill between their two renames), or none; and the line that tells the user about an
    unreadable one. An unreadable file is left in place: the next checkpoint replaces it."""
    unreadable = []
    for path in (checkpoints / LAST_CHECKPOINT, checkpoints / PREVIOUS_CHECKPOINT):
        if not path.is_file():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path, (f"{'; '.join(unreadable)}; resuming from {path.name}" if unreadable else None)
        unreadable.append(f"{path} is unreadable ({problem})")
    if not unreadable:
        return None, None
    return None, (f"{'; '.join(unreadable)}; no readable checkpoint is left, so the run starts over (earlier "
                  f"attempts stay in metrics.json)")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def _git(source: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit of the regbench source tree and whether it has uncommitted changes; both None unless the source
    is itself a git checkout (an installed wheel inside some other repository reports nothing)."""
    source = Path(__file__).resolve().parent.parent
    top = _git(source, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != source:
        return {"git_commit": None, "git_dirty": None}
    changes = _git(source, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": _git(source, "rev-parse", "HEAD"), "git_dirty": bool(changes) if changes is not None else None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


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
        self.history_path = run_dir / "history.csv"
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
               **{k: float(logged[k]) for k in ("val_acc", "val_nll", "val_ece") if k in logged},
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
