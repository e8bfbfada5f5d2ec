"""Find run directories below the given paths and load them into records (format: regbench.rundir_format).

Loading never raises for a broken run: it is collected as malformed with its path and the reason, so one
bad directory cannot hide the results of the others.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml  # a dependency of omegaconf; config.yaml is plain YAML written by OmegaConf

from regbench.errors import UserError
from regbench.rundir_format import (COMPLETED, CONFIG_FILE, HISTORY_COLUMNS, HISTORY_FILE, METRICS_FILE,
                                    TOP_LEVEL_METRICS, MetricsKey)


class MalformedRun(Exception):
    """A run that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class Calibration:
    """Test-set reliability data: per confidence bin, the accuracy, mean confidence and sample count."""

    bin_edges: np.ndarray
    bin_acc: np.ndarray
    bin_conf: np.ndarray
    bin_count: np.ndarray


@dataclass(frozen=True)
class RunRecord:
    """One completed run, from a run directory or from W&B."""

    source: str  # the run directory, or wandb:ENTITY/PROJECT/RUN_ID
    seed: int
    config: dict  # nested, as the run resolved it
    components: dict[str, str]  # e.g. {"norm": "batchnorm", "regularizer": "cutmix+label_smoothing"}
    metrics: dict[str, float]
    history: dict[str, np.ndarray]  # column -> one value per epoch, NaN where the epoch gave none
    calibration: Calibration | None = None


@dataclass(frozen=True)
class SkippedRun:
    source: str
    reason: str  # the status of a run that did not complete, or what is wrong with a malformed one


@dataclass
class RunCollection:
    completed: list[RunRecord] = field(default_factory=list)
    not_completed: list[SkippedRun] = field(default_factory=list)
    malformed: list[SkippedRun] = field(default_factory=list)

    def extend(self, other: RunCollection) -> None:
        self.completed += other.completed
        self.not_completed += other.not_completed
        self.malformed += other.malformed


def load_run_dirs(paths: list[str]) -> RunCollection:
    """Load every run directory at or below `paths`; a path that does not exist is a UserError."""
    collection = RunCollection()
    for run_dir in _find_run_dirs(paths):
        if not (run_dir / METRICS_FILE).exists():
            # history.csv without metrics.json: the run is still going or was killed before it could finish
            collection.not_completed.append(SkippedRun(str(run_dir), "no metrics.json"))
            continue
        try:
            status, record = _load_run_dir(run_dir)
        except MalformedRun as err:
            collection.malformed.append(SkippedRun(str(run_dir), str(err)))
            continue
        if record is None:
            collection.not_completed.append(SkippedRun(str(run_dir), status))
        else:
            collection.completed.append(record)
    return collection


def _find_run_dirs(paths: list[str]) -> list[Path]:
    run_dirs: set[Path] = set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise UserError(f"path {given!r} does not exist: give run or sweep directories")
        if path.is_file():
            if path.name != METRICS_FILE:
                raise UserError(f"path {given!r} is a file: give run or sweep directories (or a metrics.json)")
            run_dirs.add(path.parent.resolve())
            continue
        for marker in (METRICS_FILE, HISTORY_FILE, CONFIG_FILE):
            # W&B keeps a config.yaml of its own inside each run's wandb/ folder: not a run.
            run_dirs.update(found.parent.resolve() for found in path.rglob(marker)
                            if "wandb" not in found.relative_to(path).parts)
    return sorted(run_dirs)


def _load_run_dir(run_dir: Path) -> tuple[str, RunRecord | None]:
    """Return the run's status and, for a completed run, its record."""
    summary = _read_json(run_dir / METRICS_FILE)
    status = summary.get(MetricsKey.STATUS)
    if not isinstance(status, str):
        raise MalformedRun("metrics.json has no 'status' string")
    if status != COMPLETED:
        return status, None
    seed = summary.get(MetricsKey.SEED)
    if not _is_int(seed):
        raise MalformedRun(f"metrics.json 'seed' is {seed!r}, not an integer")
    components = summary.get(MetricsKey.COMPONENTS)
    if not isinstance(components, dict) or not all(isinstance(v, str) for v in components.values()):
        raise MalformedRun("metrics.json 'components' is not a mapping of names")
    record = RunRecord(
        source=str(run_dir),
        seed=seed,
        config=_read_config(run_dir / CONFIG_FILE),
        components=components,
        metrics=_parse_metrics(summary.get(MetricsKey.METRICS), summary),
        history=_read_history(run_dir / HISTORY_FILE),
        calibration=_parse_calibration(summary.get(MetricsKey.CALIBRATION)),
    )
    return status, record


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MalformedRun(f"cannot read {path.name}: {err}") from err
    if not isinstance(data, dict):
        raise MalformedRun(f"{path.name} does not hold a JSON object")
    return data


def _read_config(path: Path) -> dict:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise MalformedRun(f"cannot read {path.name}: {err}") from err
    if not isinstance(config, dict):
        raise MalformedRun(f"{path.name} does not hold a mapping")
    return config


def _parse_metrics(metrics, summary: dict) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise MalformedRun("metrics.json 'metrics' is not a mapping")
    parsed = {name: float(summary[name]) for name in TOP_LEVEL_METRICS if _is_number(summary.get(name))}
    for name, value in metrics.items():
        if value is None:  # a metric the run did not produce
            continue
        if not _is_number(value):
            raise MalformedRun(f"metrics.json metric {name!r} is {value!r}, not a number")
        parsed[name] = float(value)
    return parsed


def _parse_calibration(calibration) -> Calibration | None:
    if calibration is None:
        return None
    try:
        bins = {key: np.array([math.nan if v is None else float(v) for v in calibration[key]])
                for key in ("bin_edges", "bin_acc", "bin_conf", "bin_count")}
    except (KeyError, TypeError, ValueError) as err:
        raise MalformedRun(f"metrics.json 'calibration' is malformed: {err!r}") from err
    n_bins = len(bins["bin_acc"])
    if len(bins["bin_conf"]) != n_bins or len(bins["bin_count"]) != n_bins or len(bins["bin_edges"]) != n_bins + 1:
        raise MalformedRun("metrics.json 'calibration' bin lists do not match in length")
    return Calibration(**bins)


def _read_history(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MalformedRun(f"cannot read {path.name}: {err}") from err
    if not rows:
        raise MalformedRun(f"{path.name} is empty")
    header, body = rows[0], rows[1:]
    missing = [name for name in HISTORY_COLUMNS if name not in header]
    if missing:
        raise MalformedRun(f"{path.name} lacks columns {', '.join(missing)}")
    for line_number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise MalformedRun(f"{path.name} line {line_number} has {len(row)} fields, the header {len(header)}")
    history = {}
    for index, name in enumerate(header):
        try:
            history[name] = np.array([float(row[index]) if row[index].strip() else math.nan for row in body])
        except ValueError as err:
            if name in HISTORY_COLUMNS:
                raise MalformedRun(f"{path.name} column {name!r}: {err}") from err
            # unknown extra columns may hold anything; only numeric columns are used
    if np.isnan(history["epoch"]).any():
        raise MalformedRun(f"{path.name} has a row without an epoch")
    return history


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
