"""One Hydra job: validate, plan, then skip, resume or train; record the outcome in the sweep index.

In a sweep a failed job is recorded and reported in one line, and the sweep goes on with the next job (the CLI
exits non-zero at the end); a single run fails loudly. An interruption (Ctrl-C, SIGTERM) stops the sweep.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Callable

from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from regbench.config.validate import validate_config
from regbench.run.distributed import global_rank
from regbench.errors import EXIT_ON_INTERRUPT, EXIT_ON_SIGTERM, ReportedError
from regbench.run.plan import HydraJob, plan_run
from regbench.sweepdir_format import NEW, RESTARTED, RESUMED, SKIPPED, JobKey, SweepIndex, objective
from regbench.run.train import train
from regbench.rundir_format import FAILED, INTERRUPTED, METRICS_FILE, RUNNING, MetricsKey


def index_recorder(job: HydraJob, run_dir: Path) -> Callable[..., None]:
    """Writes job `job.num`'s entry of sweep.json (rank 0 of a sweep job only)."""
    if not job.multirun or global_rank() != 0:
        return lambda **fields: None
    index = SweepIndex(job.sweep_dir)
    relative = os.path.relpath(run_dir, job.sweep_dir)
    common = {JobKey.OVERRIDES: list(job.overrides), JobKey.RUN_DIR: relative,
              JobKey.METRICS: os.path.join(relative, METRICS_FILE)}
    return lambda **fields: index.record_job(job.num, **common, **fields)


def run_job(cfg: DictConfig, process_start: float | None) -> float | None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    job = HydraJob.current()
    record = index_recorder(job, Path(resolved["run_dir"]))
    record(status=RUNNING, outcome=None, error=None)
    try:
        validate_config(resolved)
        plan = plan_run(resolved, job)
        if plan.resumption.completed is not None:
            payload, outcome = plan.resumption.completed, SKIPPED
            print(f"{plan.run_dir}: already completed with this config; skipped", flush=True)
        else:
            if plan.resumption.notice and global_rank() == 0:
                print(f"regbench train: {plan.resumption.notice}", file=sys.stderr, flush=True)
            outcome = RESUMED if plan.resumption.checkpoint else RESTARTED if plan.resumption.attempts else NEW
            payload = train(resolved, plan, process_start)
    except SIGTERMException:
        record(status=INTERRUPTED, error="SIGTERM")
        raise SystemExit(EXIT_ON_SIGTERM) from None
    except (KeyboardInterrupt, SystemExit):
        record(status=INTERRUPTED, error="interrupted")
        raise SystemExit(EXIT_ON_INTERRUPT) from None
    except Exception as err:  # noqa: BLE001  (a failed job must not stop the sweep)
        message = str(err) if isinstance(err, ReportedError) else f"{type(err).__name__}: {err}"
        record(status=FAILED, error=message)
        if not job.multirun:
            raise
        if not isinstance(err, ReportedError):
            traceback.print_exc()
        print(f"regbench train: job {job.num} failed: {message}", file=sys.stderr, flush=True)
        return objective(resolved, None)
    record(status=payload[MetricsKey.STATUS], outcome=outcome, config_hash=payload[MetricsKey.CONFIG_HASH])
    return objective(resolved, payload)
