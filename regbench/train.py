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
from regbench.data.report import label_sections, log_label_report
from regbench.describe import component_names, config_hash, wandb_config
from regbench.errors import UserError
from regbench.loggers import build_logger, finish_logger
from regbench.module import ClassifierModule
from regbench.norms import uses_batch_statistics
from regbench.regularizers import build_regularizers
from regbench.rundir import RunRecorder, check_fresh_run_dir, git_commit, package_versions, write_json_atomic
from regbench.trainer import build_trainer


def quiet_lightning() -> None:
    """Lightning's start-up chatter (GPU/TPU availability, tips) drowns the run's own lines."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(srun|LeafSpec|tensorboardX|does not have many workers).*")


def check_batch_norm_batch(model: nn.Module, batch_size: int) -> None:
    if batch_size == 1 and any(uses_batch_statistics(m) for m in model.modules()):
        raise UserError("data.batch_size=1 cannot be batch-normalized in training; use a larger batch size or a "
                        "batch-independent norm (norm=groupnorm, layernorm, rmsnorm, evonorm_s0, frn or bcn_ws)")


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


def build_run(resolved: dict[str, Any], run_dir: Path, process_start: float):
    """Everything a run needs, built from its resolved config."""
    L.seed_everything(resolved["seed"], verbose=False)
    datamodule = build_datamodule(resolved["data"], resolved["seed"])
    model = build_backbone(resolved["backbone"], resolved["norm"], datamodule.image_shape, datamodule.num_classes)
    check_batch_norm_batch(model, resolved["data"]["batch_size"])
    regularizers = build_regularizers(resolved["regularizer"], resolved["seed"], backbone=resolved["backbone"])
    module = ClassifierModule(model, regularizers, datamodule.num_classes, resolved["optim"], resolved["sched"],
                              class_weights=datamodule.class_weights, is_noisy=datamodule.is_noisy)
    names = component_names(resolved)
    tags = [names["data"], names["backbone"], names["norm"], *names["regularizer"].split("+")]
    logger = build_logger(resolved["logger"], run_dir, resolved["exp_name"], tags, wandb_config(resolved))
    log_label_report(logger, datamodule)
    recorder = RunRecorder(run_dir, print_lines=not sys.stdout.isatty(), process_start=process_start)
    trainer, checkpoint = build_trainer(resolved["trainer"], run_dir, logger, [recorder])
    return datamodule, module, logger, recorder, trainer, checkpoint


def evaluate(trainer: L.Trainer, module: ClassifierModule, datamodule, recorder: RunRecorder,
             best_checkpoint: str) -> dict[str, Any]:
    """Test the final model, then the best-validation one; summarize the history."""
    final = test_metrics(trainer, module, datamodule, ckpt_path=None)
    calibration = module.last_test_bins
    reports = module.regularizer_reports(datamodule.test_dataloader())
    labels_report = label_sections(datamodule, module.last_test_per_class_acc)
    rows = recorder.rows
    best_epoch = max(range(len(rows)), key=lambda i: rows[i]["val_acc"])
    best = test_metrics(trainer, module, datamodule, ckpt_path=best_checkpoint or None)
    metrics = {**final, **{k: rows[-1][k] for k in ("val_acc", "val_nll", "val_ece", "train_loss")},
               "best_epoch": best_epoch, "best_val_acc": rows[best_epoch]["val_acc"], "best_test_acc": best["test_acc"]}
    return {"metrics": metrics, "calibration": calibration, "epochs": len(rows),
            "images_per_s": sum(r["images_per_s"] for r in rows) / len(rows), "startup_s": recorder.startup_s,
            **labels_report, **reports}


def train(cfg: DictConfig, process_start: float | None = None) -> dict[str, Any]:
    """Train one run and write its directory; returns the metrics.json payload."""
    started = time.perf_counter()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(resolved["run_dir"])
    check_fresh_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    quiet_lightning()
    logger = trainer = None
    try:
        datamodule, module, logger, recorder, trainer, checkpoint = build_run(
            resolved, run_dir, started if process_start is None else process_start)
        trainer.fit(module, datamodule=datamodule)
        payload = run_payload(resolved, "completed", started,
                              **evaluate(trainer, module, datamodule, recorder, checkpoint.best_model_path))
        if trainer.is_global_zero:
            write_json_atomic(run_dir / "metrics.json", payload)
        finish_logger(logger, exit_code=0)
        return payload
    except BaseException as err:
        # Lightning turns Ctrl-C into SystemExit(1) after marking the trainer interrupted.
        interrupted = isinstance(err, KeyboardInterrupt) or (trainer is not None and trainer.interrupted)
        error = None if interrupted else f"{type(err).__name__}: {err}"
        write_json_atomic(run_dir / "metrics.json",
                          run_payload(resolved, "interrupted" if interrupted else "failed", started, error=error))
        finish_logger(logger, exit_code=130 if interrupted else 1)
        raise
