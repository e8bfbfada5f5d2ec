"""The end of a sweep in W&B: `regbench compare`'s report of the sweep directory, logged as a summary run in the
sweep's group. Whatever prevents it (no job completed, W&B failing) is one warning line: the sweep's results are
in its run directories either way, and `regbench compare` reads them there."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Mapping

from regbench.compare.grouping import detect_grouping_keys, parse_baseline
from regbench.compare.report import Report, build_report
from regbench.compare.runs import load_run_dirs
from regbench.compare.wandb_report import WandbTarget, log_report_run
from regbench.errors import UserError
from regbench.loggers import resolve_wandb_mode
from regbench.sweepdir_format import IndexKey, SweepIndex

# Inside the sweep directory, beside the jobs' folders: the summary run's offline files (SUMMARY_DIR/wandb/).
SUMMARY_DIR = "summary"


def sweep_report(sweep_dir: Path, summary: Mapping[str, Any]) -> Report:
    """What `regbench compare SWEEP_DIR` shows with the `sweep_summary` config's metric and baseline: the completed
    jobs grouped by the settings that vary."""
    runs = load_run_dirs([str(sweep_dir)])
    if not runs.completed:
        raise UserError("no job of the sweep completed")
    baseline = parse_baseline(summary["baseline"]) if summary["baseline"] is not None else None
    return build_report(runs.completed, summary["metric"], detect_grouping_keys(runs.completed), baseline)


def summary_target(sweep_dir: Path, wandb: Mapping[str, Any]) -> WandbTarget:
    """The summary run, in the group its jobs were filed in (the sweep's index records it)."""
    # Stable for the sweep directory: a relaunched sweep updates its summary run instead of adding one.
    run_id = hashlib.sha1(f"summary|{sweep_dir.resolve()}".encode()).hexdigest()[:16]
    group = SweepIndex(sweep_dir).read()[IndexKey.WANDB_GROUP]
    return WandbTarget(project=wandb["project"], entity=wandb["entity"], group=group,
                       mode=resolve_wandb_mode(wandb["mode"]), save_dir=sweep_dir / SUMMARY_DIR, run_id=run_id,
                       name=f"summary {sweep_dir.name}")


def log_sweep_summary(sweep_dir: Path, summary: Mapping[str, Any], wandb: Mapping[str, Any]) -> None:
    """Log the sweep's comparison to W&B (as its jobs were: offline unless logged in), or say in one line why not."""
    try:
        target = summary_target(sweep_dir, wandb)
        if target.mode != "disabled":
            log_report_run(sweep_report(sweep_dir, summary), target)
    except Exception as err:  # noqa: BLE001  (a summary that cannot be made must not fail a finished sweep)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"regbench train: warning: no W&B summary run for sweep {sweep_dir}: {reason}", file=sys.stderr,
              flush=True)
