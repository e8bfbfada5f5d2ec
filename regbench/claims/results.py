"""Read a card's sweep back: each arm's metric per seed, from sweep.json and the jobs' run directories."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regbench.claims.arms import ARM_KEY
from regbench.claims.card import ARMS
from regbench.claims.plan import SweepPlan
from regbench.compare.report import available_metrics
from regbench.compare.runs import RunRecord, load_run_dirs
from regbench.errors import ReportedError, UserError
from regbench.rundir_format import COMPLETED, METRICS_FILE, MetricsKey
from regbench.sweepdir_format import INDEX_NAME, IndexKey, JobKey


@dataclass(frozen=True)
class SweepResults:
    values: dict[str, dict[int, float]]  # arm -> seed -> metric
    records: dict[str, list[RunRecord]]  # arm -> its runs, in seed order
    wall_time_s: float  # training time of all the runs together (the last attempt of each)
    versions: dict[str, Any]  # package versions of the first run (torch, lightning, ...)


def read_results(plan: SweepPlan, metric: str) -> SweepResults:
    """Every (arm, seed) job of the plan must have completed; a missing or unfinished one is reported."""
    jobs = _jobs_by_arm_and_seed(plan.sweep_dir)
    wanted = [(arm, seed) for seed in plan.seeds for arm in ARMS]
    problems = [f"{arm} seed {seed}: " + (_job_state(jobs[arm, seed]) if (arm, seed) in jobs else "never started")
                for arm, seed in wanted if jobs.get((arm, seed), {}).get(JobKey.STATUS) != COMPLETED]
    if problems:
        raise ReportedError(f"{len(problems)} of {len(wanted)} jobs in {plan.sweep_dir} did not complete ("
                            + "; ".join(problems) + "); relaunch the same command to resume them")
    values: dict[str, dict[int, float]] = {arm: {} for arm in ARMS}
    records: dict[str, list[RunRecord]] = {arm: [] for arm in ARMS}
    wall_time, versions = 0.0, {}
    for arm, seed in wanted:
        run_dir = plan.sweep_dir / jobs[arm, seed][JobKey.RUN_DIR]
        record = _load_one(run_dir)
        if metric not in record.metrics:
            raise UserError(f"claim card {plan.card.path}: metric={metric!r} is not a metric of the runs; "
                            f"available: {', '.join(available_metrics([record]))}")
        if not math.isfinite(record.metrics[metric]):
            raise ReportedError(f"{run_dir}: {metric} is {record.metrics[metric]}, not a finite number")
        values[arm][seed] = record.metrics[metric]
        records[arm].append(record)
        summary = json.loads((run_dir / METRICS_FILE).read_text())
        wall_time += float(summary.get(MetricsKey.WALL_TIME_S) or 0.0)
        versions = versions or summary.get(MetricsKey.VERSIONS) or {}
    return SweepResults(values, records, wall_time, versions)


def launch_count(sweep_dir: Path) -> int:
    """How often the sweep was launched (sweep.json counts each start), 0 before the first."""
    try:
        return len(json.loads((sweep_dir / INDEX_NAME).read_text())[IndexKey.LAUNCHES])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _jobs_by_arm_and_seed(sweep_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    path = sweep_dir / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReportedError(f"{path} cannot be read ({err}): the sweep wrote no index") from None
    jobs = {}
    for job in index.get(IndexKey.JOBS, []):
        settings = dict(item.lstrip("+").split("=", 1) for item in job.get(JobKey.OVERRIDES, []) if "=" in item)
        if ARM_KEY in settings and settings.get("seed", "").isdigit():
            jobs[settings[ARM_KEY], int(settings["seed"])] = job
    return jobs


def _job_state(job: dict[str, Any]) -> str:
    error = job.get(JobKey.ERROR)
    return f"job {job[JobKey.JOB]} {job.get(JobKey.STATUS)}" + (f" ({error})" if error else "")


def _load_one(run_dir: Path) -> RunRecord:
    collection = load_run_dirs([str(run_dir)])
    if collection.malformed:
        raise ReportedError(f"{run_dir} cannot be read: {collection.malformed[0].reason}")
    if len(collection.completed) != 1:
        raise ReportedError(f"{run_dir} holds no completed run, though sweep.json says it completed")
    return collection.completed[0]
