"""Sweep bookkeeping: the `sweep.json` index of a multirun directory and the end-of-sweep summary.

Jobs may run in other processes or on other machines (submitit, SLURM) and finish at the same moment, so every
update re-reads the index under an exclusive file lock and replaces it atomically.
"""
from __future__ import annotations

import fcntl
import hashlib
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from regbench.rundir_format import COMPLETED, FAILED, INTERRUPTED, RUNNING, read_json, write_json_atomic

INDEX_NAME = "sweep.json"
# Ending states of a job; "running" is written when it starts.
FINAL_STATUSES = (COMPLETED, FAILED, INTERRUPTED)
# Keys that repeat a job rather than change what it computes.
REPEAT_KEYS = ("seed",)


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
    return float(payload["metrics"][name]) if payload is not None else float("nan")


def varying_keys(overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[str]:
    """The config keys a sweep varies (from sweep overrides like `norm=a,b` and `hydra.sweeper.params`),
    leaving out the ones that only repeat a job (the seed)."""
    parser = OverridesParser.create()
    candidates = [*overrides, *(f"{key}={value}" for key, value in (sweeper_params or {}).items())]
    keys = [parsed.get_key_element() for parsed in parser.parse_overrides(candidates) if parsed.is_sweep_override()]
    return [key for key in dict.fromkeys(keys) if key.lstrip("+~") not in REPEAT_KEYS]


def job_type(overrides: list[str], varying: list[str], limit: int = 64) -> str | None:
    """W&B job_type for a sweep job: its values of the varying keys, e.g. `regularizer=[cutmix,ema] norm=gn`."""
    wanted = {key.lstrip("+~") for key in varying}
    parts = [item for item in overrides if item.split("=", 1)[0].lstrip("+~") in wanted]
    text = " ".join(parts)
    if len(text) <= limit:
        return text or None
    # Cut to W&B's length with a digest of the whole, so two long settings never share a job type.
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{text[:limit - len(digest) - 1]}~{digest}"


def sweep_wandb_group(exp_name: str, sweep_dir: Path) -> str:
    """The W&B group that every job of a sweep shares, and its summary run: the sweep's name and time. A sweep
    records it in its index when it launches, from the sweep's own `exp_name`: jobs that set their own (a sweep
    over `+exp=a,b`) still share it."""
    return f"{exp_name}/{Path(sweep_dir).name}"


def summarize(index: dict[str, Any], launch: int) -> tuple[str, int]:
    """One summary line for the jobs of `launch`, and how many of them did not complete."""
    jobs = [job for job in index["jobs"] if job.get("launch") == launch]
    counts = {status: sum(job.get("status") == status for job in jobs) for status in (*FINAL_STATUSES, RUNNING)}
    skipped = sum(job.get("outcome") == "skipped" for job in jobs)
    resumed = sum(job.get("outcome") == "resumed" for job in jobs)
    line = (f"sweep {index['sweep_dir']}: {len(jobs)} jobs, {counts[COMPLETED]} completed ({skipped} already "
            f"done and skipped, {resumed} resumed), {counts[FAILED]} failed, {counts[INTERRUPTED]} interrupted")
    if counts[RUNNING]:
        line += f", {counts[RUNNING]} never reported back"
    failed = [job for job in jobs if job.get("status") != COMPLETED]
    if failed:
        line += "; not completed: " + ", ".join(f"job {job['job']} ({job.get('status')}: {job.get('error') or '-'})"
                                                for job in failed)
    return line, len(failed)


class SweepCallback(Callback):
    """Opens the index when a sweep launches and prints the summary when it ends. Jobs record themselves
    (regbench.job), wherever they run."""

    def __init__(self) -> None:
        self.launch = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = list(config.hydra.overrides.task)
        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=True) if params else {}
        sweep_dir = Path(config.hydra.sweep.dir)
        self.launch = SweepIndex(sweep_dir).start_launch(overrides, varying_keys(overrides, params),
                                                         sweep_wandb_group(config.exp_name, sweep_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        index = SweepIndex(Path(config.hydra.sweep.dir))
        line, not_completed = summarize(index.read(), self.launch)
        print(line, file=sys.stderr if not_completed else sys.stdout, flush=True)
        LAST_SWEEP["not_completed"] = not_completed
        if config.logger.name == "wandb":
            # Imported here: comparing and W&B are slow to import, and a sweep needs them only now.
            from regbench.sweeps.summary import log_sweep_summary

            log_sweep_summary(index.sweep_dir, OmegaConf.to_container(config.sweep_summary, resolve=True),
                              OmegaConf.to_container(config.logger.wandb, resolve=True))


# Read by the CLI after Hydra returns, to exit non-zero when a job of the sweep did not complete.
LAST_SWEEP: dict[str, int] = {}
