"""The sweep directory's index, SWEEP_DIR/sweep.json: its launches and every job's status, shared by the sweep
callback that opens it (regbench.sweeps), the jobs that record themselves in it (regbench.run) and its readers
(claims). Torch- and Hydra-free.

Jobs may run in other processes or on other machines (submitit, SLURM) and finish at the same moment, so every
update re-reads the index under an exclusive file lock and replaces it atomically.
"""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from regbench.rundir_format import COMPLETED, FAILED, INTERRUPTED, MetricsKey, read_json, write_json_atomic

INDEX_NAME = "sweep.json"
# Ending states of a job; "running" is written when it starts.
FINAL_STATUSES = (COMPLETED, FAILED, INTERRUPTED)
# How a completed job came to its result: trained from the start, resumed from its checkpoint, started over (its
# earlier attempt left no usable checkpoint), or skipped (already completed with this config).
NEW, RESUMED, RESTARTED, SKIPPED = "new", "resumed", "restarted", "skipped"


class IndexKey:
    """sweep.json's top-level keys, spelled once."""

    SWEEP_DIR = "sweep_dir"
    VARYING = "varying"  # the config keys the sweep varies
    WANDB_GROUP = "wandb_group"  # the first launch's: every job and the summary run share it
    LAUNCHES = "launches"  # one entry per launch (LAUNCH, STARTED, OVERRIDES)
    JOBS = "jobs"  # one entry per job (JobKey), in job order
    STARTED = "started"


class JobKey:
    """The keys of a job's entry in sweep.json, spelled once: SweepIndex.record_job takes these as its keywords."""

    JOB = "job"  # the job's number
    LAUNCH = "launch"  # the launch that last ran it
    STATUS = "status"  # RUNNING, or one of FINAL_STATUSES
    ERROR = "error"
    OUTCOME = "outcome"  # NEW, RESUMED, RESTARTED or SKIPPED for a job that completed
    OVERRIDES = "overrides"
    RUN_DIR = "run_dir"  # relative to the sweep directory
    METRICS = "metrics"  # the run's metrics.json, relative to the sweep directory
    CONFIG_HASH = "config_hash"
    UPDATED = "updated"


JOB_FIELDS = {value for name, value in vars(JobKey).items() if name.isupper()} - {JobKey.JOB, JobKey.LAUNCH,
                                                                                  JobKey.UPDATED}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class SweepIndex:
    def __init__(self, sweep_dir: Path):
        self.sweep_dir = Path(sweep_dir)
        self.path = self.sweep_dir / INDEX_NAME

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        with open(self.sweep_dir / f".{INDEX_NAME}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        return read_json(self.path) or {IndexKey.SWEEP_DIR: str(self.sweep_dir), IndexKey.VARYING: [],
                                         IndexKey.LAUNCHES: [], IndexKey.JOBS: []}

    def _update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with self._locked():
            index = self.read()
            change(index)
            write_json_atomic(self.path, index)
            return index

    def start_launch(self, overrides: list[str], varying: list[str], wandb_group: str) -> int:
        """Record a launch of the sweep (the first or a relaunch); returns its number. The W&B group is the first
        launch's: a relaunch adds its jobs to the same group."""
        def change(index: dict[str, Any]) -> None:
            launches = index[IndexKey.LAUNCHES]
            index[IndexKey.VARYING] = varying
            index.setdefault(IndexKey.WANDB_GROUP, wandb_group)
            launches.append({JobKey.LAUNCH: len(launches), IndexKey.STARTED: now_iso(), JobKey.OVERRIDES: overrides})
        return len(self._update(change)[IndexKey.LAUNCHES]) - 1

    def record_job(self, num: int, **fields: Any) -> None:
        """Create or update job `num`'s entry with `fields` (JOB_FIELDS: a misspelt one would write a key that no
        reader knows)."""
        unknown = sorted(set(fields) - JOB_FIELDS)
        if unknown:
            raise ValueError(f"sweep.json job fields {unknown} are not among {sorted(JOB_FIELDS)}")

        def change(index: dict[str, Any]) -> None:
            fields[JobKey.LAUNCH] = max(len(index[IndexKey.LAUNCHES]) - 1, 0)
            jobs = index[IndexKey.JOBS]
            for entry in jobs:
                if entry[JobKey.JOB] == num:
                    entry.update(fields, **{JobKey.UPDATED: now_iso()})
                    return
            jobs.append({JobKey.JOB: num, **fields, JobKey.UPDATED: now_iso()})
            jobs.sort(key=lambda entry: entry[JobKey.JOB])
        self._update(change)


def objective(cfg: Mapping[str, Any], payload: dict[str, Any] | None) -> float | None:
    """What a job returns to the sweeper: the `optimized_metric` (NaN when the run failed), else nothing."""
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    return float(payload[MetricsKey.METRICS][name]) if payload is not None else float("nan")
