"""The Lightning Trainer from the `trainer` config group, with the run directory's checkpoints."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, RichProgressBar
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from regbench.config.trainer import check_trainer_config
from regbench.run.randomness import ResumableRandomness
from regbench.rundir_format import (BEST_CHECKPOINT, CHECKPOINT_DIR, CRAFTED_BEST_CHECKPOINT, LAST_CHECKPOINT,
                                    PREVIOUS_CHECKPOINT)


class NoProfiler(PassThroughProfiler):
    """Lightning wraps every hook call, some 45 per training step, in `profiler.profile(name)`; its default
    PassThroughProfiler builds a generator-based context manager for each. This one hands out one shared no-op
    context: the same nothing, for a fraction of the per-step cost."""

    _NO_OP = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._NO_OP


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it: a kill mid-write keeps the previous one whole.
    A replaced last.ckpt is kept as previous.ckpt, to resume from should last.ckpt be found unreadable."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        if path.name == LAST_CHECKPOINT and path.exists():
            os.replace(path, path.with_name(PREVIOUS_CHECKPOINT))
        os.replace(tmp, path)


class LastCheckpoint(Checkpoint):
    """Writes last.ckpt, where a relaunched run resumes: at the end of every `every_n_epochs`-th epoch and of the
    final one, and at a SIGTERM. (Lightning's ModelCheckpoint(save_last=True) writes it only when it saves a new
    best, so a run killed after its validation accuracy peaked would repeat every epoch since the peak.) As a
    Checkpoint, Lightning runs it after the other callbacks and the module's epoch-end hook: the checkpoint holds
    the epoch's history row, the regularizers' end-of-epoch state and the random streams as the next epoch will
    find them.

    SLURM sends SIGTERM before it preempts or requeues a job. Lightning then stops at the next batch boundary
    with SIGTERMException (on every rank at once under DDP); the state there is saved as the last checkpoint, so
    the relaunched run continues with the very next batch. Except during an epoch's validation: Lightning
    resumes such a checkpoint without finishing that validation, leaving the epoch without validation metrics.
    The last checkpoint then stays the one of the previous epoch's end, and the relaunched run repeats the
    interrupted epoch."""

    def __init__(self, path: Path, every_n_epochs: int):
        self.path, self.every_n_epochs = path, every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if done % self.every_n_epochs == 0 or done == trainer.max_epochs:
            trainer.save_checkpoint(self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if (isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING
                and not trainer.validating):
            trainer.save_checkpoint(self.path)


def crafted_best_checkpoint(run_dir: Path) -> ModelCheckpoint:
    """crafted_best.ckpt, the epoch of the best crafted-shift validation accuracy (data.crafted_val), checked every
    epoch like best.ckpt. Passed among the callbacks: Lightning runs checkpoint callbacks last, in their order, so it
    comes before last.ckpt as best.ckpt does."""
    return ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename=Path(CRAFTED_BEST_CHECKPOINT).stem,
                           monitor="val_crafted_acc", mode="max", save_top_k=1, save_last=False,
                           enable_version_counter=False, every_n_epochs=1, save_on_train_epoch_end=True)


class StepValuesBar(RichProgressBar):
    """The terminal's progress bar, showing the training loss and accuracy of the last step the finite-loss check
    has read (one step behind): Lightning's own bar would read the logged values on the host at every step, each
    read a wait for the device."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return {**super().get_metrics(trainer, pl_module), **pl_module.finite_check.last_step}


def build_trainer(cfg: Mapping[str, Any], run_dir: Path, logger, callbacks: list[L.Callback],
                  plugins: list[Any] = ()) -> L.Trainer:
    check_trainer_config(cfg)
    checkpoints = run_dir / CHECKPOINT_DIR
    # Checked every epoch, whatever checkpoint_every_n_epochs says: best_test_* must be the best_epoch's. Listed
    # before LastCheckpoint (Lightning keeps the order of checkpoint callbacks), so last.ckpt records this epoch's
    # best score and a resumed run never replaces best.ckpt with a worse epoch.
    best = ModelCheckpoint(dirpath=checkpoints, filename=Path(BEST_CHECKPOINT).stem, monitor="val_acc", mode="max",
                           save_top_k=1, save_last=False, enable_version_counter=False, every_n_epochs=1,
                           save_on_train_epoch_end=True)
    last = LastCheckpoint(checkpoints / LAST_CHECKPOINT, cfg["checkpoint_every_n_epochs"])
    on_terminal = sys.stdout.isatty()
    return L.Trainer(
        max_epochs=cfg["max_epochs"], accelerator=cfg["accelerator"], devices=cfg["devices"],
        strategy=cfg["strategy"], precision=cfg["precision"], deterministic=cfg["deterministic"],
        logger=logger if logger is not None else False,
        callbacks=[*callbacks, ResumableRandomness(), best, last, *([StepValuesBar()] if on_terminal else [])],
        plugins=[AtomicCheckpointIO(), *plugins], profiler=NoProfiler(),
        enable_progress_bar=on_terminal, enable_model_summary=on_terminal, num_sanity_val_steps=0,
        default_root_dir=str(run_dir), log_every_n_steps=10)
