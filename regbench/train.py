"""One training run: config -> data, model, regularizers -> Lightning fit/test -> run directory."""
from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

import regbench
from regbench.backbones import build_backbone
from regbench.data import build_datamodule
from regbench.describe import component_names, config_hash, wandb_config
from regbench.errors import UserError
from regbench.loggers import build_logger, finish_logger
from regbench.module import ClassifierModule
from regbench.regularizers import build_regularizers
from regbench.rundir import RunRecorder, check_fresh_run_dir, git_commit, package_versions, write_json_atomic
from regbench.trainer import build_trainer


def quiet_lightning() -> None:
    """Lightning's start-up chatter (GPU/TPU availability, tips) drowns the run's own lines."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(srun|LeafSpec|tensorboardX|does not have many workers).*")


def check_batch_norm_batch(model: nn.Module, batch_size: int) -> None:
    if batch_size == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError("data.batch_size=1 cannot be batch-normalized in training; use a larger batch size or a "
                        "batch-independent norm (norm=groupnorm or norm=layernorm)")


def run_payload(cfg: dict[str, Any], status: str, started: float, **fields: Any) -> dict[str, Any]:
    return {
        "status": status, "error": fields.pop("error", None), "seed": cfg["seed"], "exp_name": cfg["exp_name"],
        "components": component_names(cfg), **fields, "wall_time_s": time.perf_counter() - started,
        "git_commit": git_commit(), "versions": {**package_versions(), "regbench": regbench.__version__},
        "config_hash": config_hash(cfg),
    }


def test_metrics(trainer: L.Trainer, module: ClassifierModule, datamodule, ckpt_path: str | None) -> dict:
    results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0]
    return {key: float(value) for key, value in results.items()}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one run and write its directory; returns the metrics.json payload."""
    started = time.perf_counter()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(resolved["run_dir"])
    check_fresh_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    quiet_lightning()
    logger = None
    try:
        L.seed_everything(resolved["seed"], verbose=False)
        datamodule = build_datamodule(resolved["data"], resolved["seed"])
        model = build_backbone(resolved["backbone"], resolved["norm"], datamodule.image_shape, datamodule.num_classes)
        check_batch_norm_batch(model, resolved["data"]["batch_size"])
        regularizers = build_regularizers(resolved["regularizer"], resolved["seed"])
        module = ClassifierModule(model, regularizers, datamodule.num_classes, resolved["optim"], resolved["sched"])
        names = component_names(resolved)
        tags = [names["data"], names["backbone"], names["norm"], *names["regularizer"].split("+")]
        logger = build_logger(resolved["logger"], run_dir, resolved["exp_name"], tags, wandb_config(resolved))
        recorder = RunRecorder(run_dir, print_lines=not sys.stdout.isatty())
        trainer, checkpoint = build_trainer(resolved["trainer"], run_dir, logger, [recorder])
        trainer.fit(module, datamodule=datamodule)
        final = test_metrics(trainer, module, datamodule, ckpt_path=None)
        calibration = module.last_test_bins
        reports = module.regularizer_reports(datamodule.test_dataloader())
        best_epoch = max(range(len(recorder.rows)), key=lambda i: recorder.rows[i]["val_acc"])
        best = test_metrics(trainer, module, datamodule, ckpt_path=checkpoint.best_model_path or None)
        last_row = recorder.rows[-1]
        metrics = {**final, **{k: last_row[k] for k in ("val_acc", "val_nll", "val_ece", "train_loss")},
                   "best_epoch": best_epoch, "best_val_acc": recorder.rows[best_epoch]["val_acc"],
                   "best_test_acc": best["test_acc"]}
        payload = run_payload(resolved, "completed", started, metrics=metrics, calibration=calibration,
                              epochs=len(recorder.rows), images_per_s=sum(r["images_per_s"] for r in recorder.rows)
                              / len(recorder.rows), **reports)
        if trainer.is_global_zero:
            write_json_atomic(run_dir / "metrics.json", payload)
        finish_logger(logger, exit_code=0)
        return payload
    except KeyboardInterrupt:
        write_json_atomic(run_dir / "metrics.json", run_payload(resolved, "interrupted", started))
        finish_logger(logger, exit_code=130)
        raise
    except BaseException as err:
        write_json_atomic(run_dir / "metrics.json", run_payload(resolved, "failed", started,
                                                                error=f"{type(err).__name__}: {err}"))
        finish_logger(logger, exit_code=1)
        raise
