"""A comparison report as a W&B run of its own: `regbench compare`'s table (mean, CI, Δ, p, ...) and its plots,
filed in the group of the runs it compares with job_type "summary", so that the group's dashboard shows the
verdict beside the runs. The end of a sweep logs one; anything else that compares runs can log its report the
same way."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from regbench.compare.grouping import format_value
from regbench.compare.plots import write_plots
from regbench.compare.render import report_cells
from regbench.compare.report import Report

SUMMARY_JOB_TYPE = "summary"


@dataclass(frozen=True)
class WandbTarget:
    """Where the report's run is filed: like the runs it compares, under a stable id so a second report of the
    same runs (a relaunched sweep) continues that run rather than adding another."""

    project: str
    entity: str | None
    group: str
    mode: str  # online, offline or disabled (already resolved)
    save_dir: Path  # the offline run is written to save_dir/wandb/
    run_id: str
    name: str
    job_type: str = SUMMARY_JOB_TYPE


def table_key(report: Report) -> str:
    return f"compare/{report.metric}"


def report_summary(report: Report) -> dict[str, Any]:
    """The run summary's headline: which group is best and by how much, as the dashboard's runs table shows it."""
    best = report.rows[0]
    headline = {"metric": report.metric, "best_group": best.label, "best_mean": best.summary.mean,
                "groups": len(report.rows), "runs": sum(row.summary.n for row in report.rows)}
    if best.comparison is not None:
        headline.update(best_diff=best.comparison.diff, best_p_value=best.comparison.p_value)
    return headline


def log_report_run(report: Report, target: WandbTarget, summary: Mapping[str, Any] | None = None) -> None:
    """Log `report` as a W&B run: its table as a wandb.Table, its PNG plots as images, and a summary of the
    headline plus `summary` (a caller's verdict, say)."""
    import wandb  # imported here: slow to import, and only this function needs it

    columns, rows = report_cells(report)
    target.save_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as plots_dir:
        plots = write_plots(report, Path(plots_dir))
        run = wandb.init(project=target.project, entity=target.entity, group=target.group, job_type=target.job_type,
                         name=target.name, id=target.run_id, resume="allow", mode=target.mode,
                         dir=str(target.save_dir),
                         config={"metric": report.metric, "lower_is_better": report.lower_is_better,
                                 "group_keys": report.keys, "baseline": report.baseline})
        exit_code = 1
        try:
            run.log({table_key(report): wandb.Table(columns=columns, data=[list(map(_cell, r)) for r in rows]),
                     **{f"plots/{path.stem}": wandb.Image(str(path)) for path in plots}})
            run.summary.update({**report_summary(report), **(summary or {})})
            exit_code = 0
        finally:
            run.finish(exit_code=exit_code)


def _cell(value):
    """Numbers and empty cells as they are; a setting's value (a list, a missing key) as the text compare shows."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    return format_value(value)
