"""What a run settles before it trains: where it stands (fresh, done, or resumable) and how W&B files it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from regbench.describe import config_hash
from regbench.rundir import Resumption, inspect_run_dir
from regbench.sweep import SweepIndex, job_type


@dataclass(frozen=True)
class HydraJob:
    """The Hydra job a run belongs to: a single run, or job `num` of the sweep in `sweep_dir`."""

    multirun: bool
    sweep_dir: Path | None = None
    num: int = 0
    overrides: tuple[str, ...] = ()

    @staticmethod
    def current() -> "HydraJob":
        if not HydraConfig.initialized():
            return HydraJob(multirun=False)
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN:
            return HydraJob(multirun=False, overrides=tuple(hydra.overrides.task))
        return HydraJob(multirun=True, sweep_dir=Path(hydra.sweep.dir), num=int(hydra.job.num),
                        overrides=tuple(hydra.overrides.task))


@dataclass(frozen=True)
class RunPlan:
    run_dir: Path
    resumption: Resumption
    wandb_group: str
    wandb_name: str
    wandb_job_type: str | None
    wandb_id: str  # stable for the run directory, so a resumed run continues the same W&B run


def plan_run(resolved: dict[str, Any], job: HydraJob) -> RunPlan:
    run_dir = Path(resolved["run_dir"])
    digest = config_hash(resolved)
    resumption = inspect_run_dir(run_dir, digest, "hydra.sweep.dir" if job.multirun else "hydra.run.dir")
    run_id = hashlib.sha1(f"{run_dir.resolve()}|{digest}".encode()).hexdigest()[:16]
    if not job.multirun:
        group = resolved["exp_name"]
        return RunPlan(run_dir, resumption, group, f"{group}/{run_dir.name}", None, run_id)
    # Every job of a sweep shares one group (the sweep's name and time); job_type holds the varying values.
    group = f"{resolved['exp_name']}/{job.sweep_dir.name}"
    kind = job_type(list(job.overrides), SweepIndex(job.sweep_dir).read()["varying"])
    name = f"{kind or 'job'} seed={resolved['seed']}"
    return RunPlan(run_dir, resumption, group, name, kind, run_id)
