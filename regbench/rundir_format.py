"""The run directory's format, shared by its writers (regbench.run, a soup) and its readers (compare, sweeps,
claims, soups, scores): file names, metrics.json's keys (MetricsKey), statuses and layout (metrics_payload), the
history columns, atomic writes and the config hash.
Torch-free, so readers that train nothing stay light.

    RUN_DIR/config.yaml            the resolved config
    RUN_DIR/history.csv            one row per epoch (HISTORY_COLUMNS, then any extra columns)
    RUN_DIR/metrics.json           status (STATUSES) and results (metrics_payload), written atomically
    RUN_DIR/checkpoints/{last,previous,best,crafted_best}.ckpt
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_acc", "val_nll", "val_ece", "lr", "images_per_s",
                   "train_time_s", "epoch_time_s"]
RESULT_FILES = (CONFIG_FILE, METRICS_FILE, HISTORY_FILE)
# metrics.json's status while an attempt is under way: not completed, and if it is still there at the next start,
# that attempt was killed.
RUNNING = "running"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"  # where a relaunch resumes: the end of the last (n-th) epoch, or a SIGTERM point
PREVIOUS_CHECKPOINT = "previous.ckpt"  # the last.ckpt it replaced: the fallback when last.ckpt is unreadable
BEST_CHECKPOINT = "best.ckpt"  # the best-validation epoch, tested at the end for best_test_*
# With data.crafted_val: the epoch of the best crafted-shift validation accuracy, tested for crafted_best_test_*
CRAFTED_BEST_CHECKPOINT = "crafted_best.ckpt"

COMPLETED, FAILED, INTERRUPTED = "completed", "failed", "interrupted"
# Every status metrics.json can hold; RUNNING is the only one that is not final.
STATUSES = (RUNNING, COMPLETED, FAILED, INTERRUPTED)
# An earlier attempt's status in metrics.json's `attempts` when it ended without a final one (killed).
KILLED = "killed"


class MetricsKey:
    """metrics.json's top-level keys that more than one module writes or reads, spelled once."""

    STATUS = "status"  # one of STATUSES
    ERROR = "error"  # why a failed run failed, else null
    SEED = "seed"
    EXP_NAME = "exp_name"
    COMPONENTS = "components"  # component_names
    INACTIVE = "inactive"  # the selected regularizers that the run's shape turns off
    METRICS = "metrics"  # metric name -> number: the final, best-checkpoint and test metrics
    CALIBRATION = "calibration"  # the test set's reliability bins
    EPOCHS = "epochs"  # epochs trained
    CLASSES = "classes"  # the class names, in label order
    IMAGES_PER_S = "images_per_s"  # mean training throughput
    STARTUP_S = "startup_s"  # from the process start to the first epoch
    BALANCED_ACC = "balanced_acc"  # long-tailed runs: the mean per-class test accuracy
    INIT = "init"  # where the weights came from, for a run that started from saved ones
    WALL_TIME_S = "wall_time_s"
    ATTEMPTS = "attempts"  # the earlier attempts of a resumed or restarted run, each with its status and error
    VERSIONS = "versions"  # the packages' versions (provenance)
    CONFIG_HASH = "config_hash"


# SADE's test resamplings: forward long-tailed, uniform and backward long-tailed; metrics.json keeps its accuracy on
# each (sade_accuracy_key).
SADE_TEST_DISTRIBUTIONS = ("forward", "uniform", "backward")


def sade_accuracy_key(distribution: str) -> str:
    return f"sade_{distribution}_acc"


# Numbers that metrics.json keeps at the top level rather than under METRICS but that are worth comparing: the
# long-tail runs' balanced test accuracy, the training throughput and SADE's accuracies.
TOP_LEVEL_METRICS = (MetricsKey.BALANCED_ACC, MetricsKey.IMAGES_PER_S,
                     *map(sade_accuracy_key, SADE_TEST_DISTRIBUTIONS))
# Keys that say where a run writes or how its sweep is summarized, not what it computes: left out of the config
# hash, so a relaunch that only changes them finds its runs done.
UNHASHED_KEYS = ("run_dir", "sweep_summary")
# Which way a metric is better, from its name: losses, calibration errors and OOD false positive rates down,
# accuracies and OOD detection areas (AUROC, AUPR) up.
LOWER_IS_BETTER_MARKERS = ("nll", "ece", "loss", "fpr95")
HIGHER_IS_BETTER_MARKERS = ("acc", "auroc", "aupr")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def config_hash(cfg: Mapping[str, Any]) -> str:
    """The content hash of a resolved config (UNHASHED_KEYS left out): the same hash means the same run."""
    content = {k: v for k, v in cfg.items() if k not in UNHASHED_KEYS}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def metrics_payload(cfg: Mapping[str, Any], status: str, *, wall_time_s: float, attempts: list[dict[str, Any]],
                    provenance: Mapping[str, Any], error: str | None = None, inactive: list | None = None,
                    **results: Any) -> dict[str, Any]:
    """metrics.json, as every writer (a trained run, a soup) lays it out: the status and what identifies the run,
    its `results`, then how it ran (the earlier attempts, the code's provenance, the config hash)."""
    return {MetricsKey.STATUS: status, MetricsKey.ERROR: error, MetricsKey.SEED: cfg["seed"],
            MetricsKey.EXP_NAME: cfg["exp_name"], MetricsKey.COMPONENTS: component_names(cfg),
            MetricsKey.INACTIVE: inactive, **results, MetricsKey.WALL_TIME_S: wall_time_s,
            MetricsKey.ATTEMPTS: attempts, **provenance, MetricsKey.CONFIG_HASH: config_hash(cfg)}


def stored_config_hash(run_dir: Path) -> str | None:
    """The config hash of the run stored in `run_dir`, None where there is no readable config."""
    from omegaconf import OmegaConf  # its YAML reading, as the writer's; readers that never call this stay lighter

    try:
        stored = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE), resolve=False)
    except Exception:  # noqa: BLE001  (any unreadable file means "not the same run")
        return None
    return config_hash(stored) if isinstance(stored, dict) else None


def better_direction(metric: str) -> str | None:
    """"min" or "max" for a metric with a known good direction (`val_nll`, `test_acc`), else None (`lr`)."""
    if any(marker in metric for marker in LOWER_IS_BETTER_MARKERS):
        return "min"
    if any(marker in metric for marker in HIGHER_IS_BETTER_MARKERS):
        return "max"
    return None


def component_names(cfg: Mapping[str, Any]) -> dict[str, str]:
    """metrics.json's `components`: each family's selected name, the regularizers joined in list order."""
    return {
        "data": cfg["data"]["name"], "backbone": cfg["backbone"]["name"], "norm": cfg["norm"]["name"],
        "regularizer": "+".join(cfg["regularizer"]) or "none", "optim": cfg["optim"]["name"],
        "sched": cfg["sched"]["name"],
    }
