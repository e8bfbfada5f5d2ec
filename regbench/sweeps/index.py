"""Sweep bookkeeping: the Hydra callback that opens a sweep's index (regbench.sweepdir_format) when it launches and
prints its summary when it ends, the keys a sweep varies, and its W&B group."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from regbench.rundir_format import COMPLETED, FAILED, INTERRUPTED, RUNNING
from regbench.sweepdir_format import FINAL_STATUSES, RESUMED, SKIPPED, IndexKey, JobKey, SweepIndex

# Keys that repeat a job rather than change what it computes.
REPEAT_KEYS = ("seed",)


def varying_keys(overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[str]:
    """The config keys a sweep varies (from sweep overrides like `norm=a,b` and `hydra.sweeper.params`),
    leaving out the ones that only repeat a job (the seed)."""
    parser = OverridesParser.create()
    candidates = [*overrides, *(f"{key}={value}" for key, value in (sweeper_params or {}).items())]
    keys = [parsed.get_key_element() for parsed in parser.parse_overrides(candidates) if parsed.is_sweep_override()]
    return [key for key in dict.fromkeys(keys) if key.lstrip("+~") not in REPEAT_KEYS]


def sweep_wandb_group(exp_name: str, sweep_dir: Path) -> str:
    """The W&B group that every job of a sweep shares, and its summary run: the sweep's name and time. A sweep
    records it in its index when it launches, from the sweep's own `exp_name`: jobs that set their own (a sweep
    over `+exp=a,b`) still share it."""
    return f"{exp_name}/{Path(sweep_dir).name}"


def summarize(index: dict[str, Any], launch: int) -> tuple[str, int]:
    """One summary line for the jobs of `launch`, and how many of them did not complete."""
    jobs = [job for job in index[IndexKey.JOBS] if job.get(JobKey.LAUNCH) == launch]
    counts = {status: sum(job.get(JobKey.STATUS) == status for job in jobs) for status in (*FINAL_STATUSES, RUNNING)}
    skipped = sum(job.get(JobKey.OUTCOME) == SKIPPED for job in jobs)
    resumed = sum(job.get(JobKey.OUTCOME) == RESUMED for job in jobs)
    line = (f"sweep {index[IndexKey.SWEEP_DIR]}: {len(jobs)} jobs, {counts[COMPLETED]} completed ({skipped} already "
            f"done and skipped, {resumed} resumed), {counts[FAILED]} failed, {counts[INTERRUPTED]} interrupted")
    if counts[RUNNING]:
        line += f", {counts[RUNNING]} never reported back"
    failed = [job for job in jobs if job.get(JobKey.STATUS) != COMPLETED]
    if failed:
        line += "; not completed: " + ", ".join(
            f"job {job[JobKey.JOB]} ({job.get(JobKey.STATUS)}: {job.get(JobKey.ERROR) or '-'})" for job in failed)
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
