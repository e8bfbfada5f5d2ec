"""One card end to end: plan the sweep, run it, read the runs back, judge, write the files, log to W&B."""
from __future__ import annotations

from pathlib import Path

from regbench.claims.card import load_card
from regbench.claims.launch import preflight_sweep, run_sweep
from regbench.claims.plan import SweepPlan, make_plan, prepare, record_plan
from regbench.claims.plot import write_claim_plot
from regbench.claims.report import Claim, summary_line, write_claim_files
from regbench.claims.results import launch_count, read_results
from regbench.claims.verdict import judge
from regbench.claims.wandb_log import log_claim
from regbench.errors import ReportedError


def plan_card(name: str, scale: str, root: Path, overrides: list[str]) -> SweepPlan:
    """Everything that can be refused without training: the card, the overrides, the directory, the dataset."""
    plan = make_plan(load_card(name), scale, root, overrides)
    prepare(plan)
    preflight_sweep(plan)
    record_plan(plan)
    return plan


def reproduce(plan: SweepPlan) -> Claim:
    launches = launch_count(plan.sweep_dir)
    code = run_sweep(plan)
    # Exit code 1 from a sweep that launched: a job did not complete, which read_results reports job by job.
    if code not in (0, 1) or launch_count(plan.sweep_dir) == launches:
        raise ReportedError(f"regbench train ended with exit code {code} before its jobs could run (see its message "
                            f"above)")
    results = read_results(plan, plan.card.metric)  # reports the jobs that did not complete
    verdict = judge(results.values["baseline"], results.values["treatment"], plan.card.metric)
    claim = Claim(plan, verdict, results.wall_time_s, results.versions)
    written = write_claim_files(claim)
    plot = write_claim_plot(claim)
    group = log_claim(claim, results.records["baseline"][0].config, plot)
    print(f"regbench reproduce: {summary_line(claim)}", flush=True)
    where = ", ".join(str(path) for path in [*written, plot])
    print(f"regbench reproduce: wrote {where}" + (f"; logged to W&B group {group}" if group else ""), flush=True)
    return claim
