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
        return read_json(self.path) or {"sweep_dir": str(self.sweep_dir), "varying": [], "launches": [], "jobs": []}

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
            index["varying"] = varying
            index.setdefault("wandb_group", wandb_group)
            index["launches"].append({"launch": len(index["launches"]), "started": now_iso(), "overrides": overrides})
        return len(self._update(change)["launches"]) - 1

    def record_job(self, num: int, **fields: Any) -> None:
        """Create or update job `num`'s entry."""
        def change(index: dict[str, Any]) -> None:
            fields["launch"] = max(len(index["launches"]) - 1, 0)
            for entry in index["jobs"]:
                if entry["job"] == num:
                    entry.update(fields, updated=now_iso())
                    return
            index["jobs"].append({"job": num, **fields, "updated": now_iso()})
            index["jobs"].sort(key=lambda entry: entry["job"])
        self._update(change)


def objective(cfg: Mapping[str, Any], payload: dict[str, Any] | None) -> float | None:
    """What a job returns to the sweeper: the `optimized_metric` (NaN when the run failed), else nothing."""
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    return float(payload[MetricsKey.METRICS][name]) if payload is not None else float("nan")
