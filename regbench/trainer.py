"""The Lightning Trainer from the `trainer` config group, with the run directory's checkpoints."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from regbench.errors import ParamError, UserError, check, check_positive_int
from regbench.randomness import ResumableRandomness

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true")
# regbench starts DDP ranks itself (see regbench.distributed), so strategies that launch processes are refused.
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")


def check_trainer_config(cfg: Mapping[str, Any]) -> None:
    try:
        check_positive_int("max_epochs", cfg["max_epochs"])
        check(cfg["accelerator"] in ACCELERATORS, "accelerator", cfg["accelerator"], f"allowed: {', '.join(ACCELERATORS)}")
        check(cfg["precision"] in PRECISIONS, "precision", cfg["precision"], f"allowed: {', '.join(PRECISIONS)}")
        check(cfg["strategy"] in STRATEGIES, "strategy", cfg["strategy"],
              f"allowed: {', '.join(STRATEGIES)} (regbench starts the DDP processes itself)")
        devices = cfg["devices"]
        check(devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices > 0),
              "devices", devices, "must be an integer > 0 or 'auto'")
        check(isinstance(cfg["deterministic"], bool) or cfg["deterministic"] == "warn", "deterministic",
              cfg["deterministic"], "must be true, false or 'warn'")
        check_positive_int("checkpoint_every_n_epochs", cfg["checkpoint_every_n_epochs"])
    except ParamError as err:
        raise UserError(str(err.at("trainer"))) from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it: a kill mid-write keeps the previous one whole."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


class CheckpointOnSigterm(L.Callback):
    """SLURM sends SIGTERM before it preempts or requeues a job. Lightning then stops at the next batch boundary
    with SIGTERMException (on every rank at once under DDP); the state there is saved as the last checkpoint, so
    the relaunched run continues with the very next batch.

    Except during an epoch's validation: Lightning resumes such a checkpoint without finishing that validation,
    leaving the epoch without validation metrics. The last checkpoint then stays the one of the previous epoch's
    end, and the relaunched run repeats the interrupted epoch."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if (isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING
                and not trainer.validating):
            trainer.save_checkpoint(self.path)


def build_trainer(cfg: Mapping[str, Any], run_dir: Path, logger, callbacks: list[L.Callback],
                  plugins: list[Any] = ()) -> tuple[L.Trainer, ModelCheckpoint]:
    check_trainer_config(cfg)
    checkpoints = run_dir / "checkpoints"
    # Saved at the end of each training epoch, after the run's own callbacks: the checkpoint then holds that
    # epoch's history row and the random streams as the next epoch will find them.
    checkpoint = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val_acc", mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False,
                                 every_n_epochs=cfg["checkpoint_every_n_epochs"], save_on_train_epoch_end=True)
    on_terminal = sys.stdout.isatty()
    trainer = L.Trainer(
        max_epochs=cfg["max_epochs"], accelerator=cfg["accelerator"], devices=cfg["devices"],
        strategy=cfg["strategy"], precision=cfg["precision"], deterministic=cfg["deterministic"],
        logger=logger if logger is not None else False,
        callbacks=[checkpoint, *callbacks, ResumableRandomness(), CheckpointOnSigterm(checkpoints / "last.ckpt")],
        plugins=[AtomicCheckpointIO(), *plugins],
        enable_progress_bar=on_terminal, enable_model_summary=on_terminal, num_sanity_val_steps=0,
        default_root_dir=str(run_dir), log_every_n_steps=10)
    return trainer, checkpoint
