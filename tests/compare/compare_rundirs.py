"""Synthetic run directories in the exact format `regbench train` writes (regbench.rundir_format).

A uniquely named module rather than conftest.py, so test modules can import it without clashing with
other test folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from omegaconf import OmegaConf

from regbench.rundir_format import HISTORY_COLUMNS

N_BINS = 15


def write_run(
    run_dir: Path,
    *,
    seed: int,
    metrics: dict,
    regularizer: dict | None = None,
    norm: str = "batchnorm",
    status: str = "completed",
    exp_name: str | None = None,
    epochs: int = 3,
    noisy: bool = False,
    lr: float = 0.1,
) -> Path:
    """Write config.yaml, history.csv and metrics.json of one run; return the run directory."""
    regularizer = regularizer or {}
    reg_name = "+".join(regularizer) or "none"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "seed": seed,
        "exp_name": exp_name or reg_name,
        # as `regbench train` resolves it: the noise and imbalance seeds default to the run's seed
        "data": {"name": "digits", "root": f"/scratch/{seed}/data", "batch_size": 128, "val_fraction": 0.1,
                 "split_seed": 0, "noise": {"type": "none", "rate": 0.0, "seed": seed},
                 "imbalance": {"type": "none", "factor": 1.0, "seed": seed}},
        "backbone": {"name": "convnet", "width": 32},
        "norm": {"name": norm, **({"momentum": 0.1} if norm == "batchnorm" else {"num_groups": 8})},
        "regularizer": regularizer,
        "optim": {"name": "sgd", "lr": lr, "weight_decay": 5e-4},
        "sched": {"name": "cosine"},
        "trainer": {"max_epochs": epochs},
        "logger": {"wandb": False, "name": f"run-{seed}"},
        "run_dir": str(run_dir),
    }
    OmegaConf.save(OmegaConf.create(config), run_dir / "config.yaml")

    columns = HISTORY_COLUMNS + (["train_acc_clean", "train_acc_noisy"] if noisy else []) + ["note"]
    with (run_dir / "history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for epoch in range(epochs):
            progress = (epoch + 1) / epochs
            row = [epoch, 2.0 - progress, 0.5 + 0.4 * progress, 0.5 + 0.3 * progress, 1.0 - 0.5 * progress,
                   0.05, lr, 5000.0, 1.2, 1.5]
            if noisy:
                row += [0.5 + 0.45 * progress, 0.1 + 0.3 * progress * progress]
            writer.writerow(row + ["" if epoch else "warmup"])  # a non-numeric extra column

    bin_edges = [i / N_BINS for i in range(N_BINS + 1)]
    summary = {
        "status": status,
        "error": "CUDA out of memory" if status == "failed" else None,
        "seed": seed,
        "exp_name": config["exp_name"],
        "components": {"data": "digits", "backbone": "convnet", "norm": norm, "regularizer": reg_name,
                       "optim": "sgd", "sched": "cosine"},
        "metrics": metrics,
        "calibration": {
            "bin_edges": bin_edges,
            "bin_acc": [min(1.0, e + 0.02) for e in bin_edges[:-1]],
            "bin_conf": [e + 0.5 / N_BINS for e in bin_edges[:-1]],
            "bin_count": [0] * 5 + [10] * (N_BINS - 5),
        },
        "epochs": epochs, "wall_time_s": 12.3, "images_per_s": 5400.0,
        "git_commit": "abc123", "versions": {"regbench": "0.1.0"}, "config_hash": "f" * 40,
        "per_class_acc": [0.9] * 10,  # a key added by a later issue: readers must tolerate it
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return run_dir


def acc_metrics(test_acc: float) -> dict:
    return {"test_acc": test_acc, "test_nll": 1.0 - test_acc, "test_ece": 0.05, "val_acc": test_acc + 0.01,
            "val_nll": 0.3, "val_ece": 0.02, "best_epoch": 2, "best_val_acc": test_acc + 0.02,
            "best_test_acc": test_acc + 0.01, "train_loss": 0.3}
