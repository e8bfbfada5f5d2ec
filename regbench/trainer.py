"""The Lightning Trainer from the `trainer` config group, with the run directory's checkpoints."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from regbench.errors import ParamError, UserError, check, check_positive_int

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true")


def check_trainer_config(cfg: Mapping[str, Any]) -> None:
    try:
        check_positive_int("max_epochs", cfg["max_epochs"])
        check(cfg["accelerator"] in ACCELERATORS, "accelerator", cfg["accelerator"], f"allowed: {', '.join(ACCELERATORS)}")
        check(cfg["precision"] in PRECISIONS, "precision", cfg["precision"], f"allowed: {', '.join(PRECISIONS)}")
        devices = cfg["devices"]
        check(devices == "auto" or (isinstance(devices, int) and devices > 0), "devices", devices,
              "must be an integer > 0 or 'auto'")
        check(isinstance(cfg["deterministic"], bool) or cfg["deterministic"] == "warn", "deterministic",
              cfg["deterministic"], "must be true, false or 'warn'")
        check_positive_int("checkpoint_every_n_epochs", cfg["checkpoint_every_n_epochs"])
    except ParamError as err:
        raise UserError(str(err.at("trainer"))) from None


def build_trainer(cfg: Mapping[str, Any], run_dir: Path, logger, callbacks: list[L.Callback]) -> tuple[L.Trainer, ModelCheckpoint]:
    check_trainer_config(cfg)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val_acc", mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False,
                                 every_n_epochs=cfg["checkpoint_every_n_epochs"])
    on_terminal = sys.stdout.isatty()
    trainer = L.Trainer(
        max_epochs=cfg["max_epochs"], accelerator=cfg["accelerator"], devices=cfg["devices"],
        strategy=cfg["strategy"], precision=cfg["precision"], deterministic=cfg["deterministic"],
        logger=logger if logger is not None else False, callbacks=[checkpoint, *callbacks],
        enable_progress_bar=on_terminal, enable_model_summary=on_terminal, num_sanity_val_steps=0,
        default_root_dir=str(run_dir), log_every_n_steps=10)
    return trainer, checkpoint
