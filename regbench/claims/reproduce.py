"""One card end to end: plan the sweep (or a procedure card's steps), run it, read the values back, judge, write
the files, log to W&B."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from regbench.claims.card import load_card
from regbench.claims.launch import preflight_sweep, run_sweep
from regbench.claims.plan import SweepPlan, make_plan, prepare, record_plan
from regbench.claims.plot import write_claim_plot
from regbench.claims.procedure import preflight_steps, read_step_values, run_steps, steps_run_summary
from regbench.claims.report import Claim, summary_line, write_claim_files
from regbench.claims.results import launch_count, read_results
from regbench.claims.verdict import judge
from regbench.claims.wandb_log import log_claim
from regbench.command import first_missing
from regbench.errors import ReportedError


def plan_card(name: str, scale: str, root: Path, overrides: list[str]) -> SweepPlan:
    """Everything that can be refused without training: the card, the overrides, the directory, the dataset. A
    refused plan leaves nothing behind in a directory it created (the checks need the arm configs written)."""
    plan = make_plan(load_card(name), scale, root, overrides)
    created = first_missing(plan.sweep_dir)
    try:
        prepare(plan)
        if plan.card.is_procedure:
            preflight_steps(plan)
        else:
            preflight_sweep(plan)
    except ReportedError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    record_plan(plan)
    return plan


def reproduce(plan: SweepPlan) -> Claim:
    if plan.card.is_procedure:
        run_steps(plan)
        values = read_step_values(plan)
        wall_time, versions, run_config = steps_run_summary(plan)
        return _judge_and_write(plan, values, wall_time, versions, run_config)
    launches = launch_count(plan.sweep_dir)
    code = run_sweep(plan)
    # Exit code 1 from a sweep that launched: a job did not complete, which read_results reports job by job.
    if code not in (0, 1) or launch_count(plan.sweep_dir) == launches:
        raise ReportedError(f"regbench train ended with exit code {code} before its jobs could run (see its message "
                            f"above)")
    results = read_results(plan, plan.card.metric)  # reports the jobs that did not complete
    return _judge_and_write(plan, results.values, results.wall_time_s, results.versions,
                            results.records["baseline"][0].config)


def _judge_and_write(plan: SweepPlan, values: dict[str, dict[int, float]], wall_time_s: float,
                     versions: dict[str, Any], run_config: dict[str, Any]) -> Claim:
    verdict = judge(values["baseline"], values["treatment"], plan.card.metric)
    claim = Claim(plan, verdict, wall_time_s, versions)
    written = write_claim_files(claim)
    plot = write_claim_plot(claim)
    group = log_claim(claim, run_config, plot) if run_config else None
    print(f"regbench reproduce: {summary_line(claim)}", flush=True)
    where = ", ".join(str(path) for path in [*written, plot])
    print(f"regbench reproduce: wrote {where}" + (f"; logged to W&B group {group}" if group else ""), flush=True)
    return claim
