"""The end of a sweep with logger=wandb: a summary run in the sweep's W&B group (job_type "summary") with
`regbench compare`'s table and plots, offline like the jobs; a sweep with nothing to compare says so in one
warning line and ends as it would have."""
from __future__ import annotations

import pytest

from regbench.compare.report import DEFAULT_METRIC
from regbench.sweeps.summary import SUMMARY_DIR

pytestmark = pytest.mark.slow
TINY = ("trainer.max_epochs=1", "backbone.widths=[8]", "hydra.sweep.dir=sweep")


def test_a_finished_sweep_gets_a_summary_run_in_its_group(run_regbench, tmp_path, offline_wandb_run):
    # A sweep over presets: each job sets its own exp_name (baseline, mixup), and all stay in the sweep's group.
    result = run_regbench("train", "-m", "logger=wandb", "+exp=baseline,mixup", *TINY)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    jobs = [offline_wandb_run(tmp_path / "sweep" / str(num) / "wandb") for num in (0, 1)]
    summary = offline_wandb_run(tmp_path / "sweep" / SUMMARY_DIR / "wandb")
    assert {job.run["run_group"] for job in jobs} == {summary.run["run_group"]} == {"default/sweep"}
    assert summary.run["job_type"] == "summary" and summary.state["state"] == "finished"
    table = summary.table(f"compare/{DEFAULT_METRIC}")
    assert {"regularizer", "mean", "ci95_low", "diff", "p_value"} <= set(table["columns"])
    groups = {row[table["columns"].index("regularizer")] for row in table["data"]}
    assert groups == {"none", "mixup"}
    assert summary.summary[f"plots/{DEFAULT_METRIC}_bars"]["_type"] == "image-file"


def test_a_sweep_without_a_completed_job_warns_in_one_line_instead_of_a_summary(run_regbench, tmp_path):
    result = run_regbench("train", "-m", "logger=wandb", "optim.lr=1e30", *TINY)
    assert result.returncode == 1  # as for any sweep with a failed job
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["regbench train: warning: no W&B summary run for sweep sweep: no job of the sweep completed"]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sweep" / SUMMARY_DIR).exists()
