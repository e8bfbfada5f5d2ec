"""A comparison report as a W&B run (regbench.compare.wandb_report), read back from its offline files with W&B's
own reader: filed in the given group as job_type "summary", holding `regbench compare --format csv`'s table
cell for cell and its PNG plots, with the headline in the summary."""
from __future__ import annotations

import csv
import io

import pytest

from regbench.compare.cli import main
from regbench.compare.grouping import detect_grouping_keys
from regbench.compare.report import build_report
from regbench.compare.runs import load_run_dirs
from regbench.compare.wandb_report import WandbTarget, log_report_run, table_key


@pytest.fixture
def logged_report(sweep, tmp_path, offline_wandb_run, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    runs = load_run_dirs([str(sweep["dir"])]).completed
    report = build_report(runs, "test_acc", detect_grouping_keys(runs), baseline=None)
    target = WandbTarget(project="regbench", entity=None, group="reg_vs_baseline/2026-12-01_10-00-00",
                         mode="offline", save_dir=tmp_path / "summary", run_id="summary0123456789",
                         name="summary 2026-12-01_10-00-00")
    log_report_run(report, target, summary={"verdict": "cutmix helps"})
    return report, offline_wandb_run(tmp_path / "summary")


def test_the_report_run_is_filed_in_the_group_as_a_summary(logged_report):
    _, run = logged_report
    assert (run.run["run_group"], run.run["job_type"], run.run["run_id"]) == (
        "reg_vs_baseline/2026-12-01_10-00-00", "summary", "summary0123456789")
    assert run.state["state"] == "finished" and run.state["exit_code"] == 0


def test_the_report_run_holds_compares_table_and_plots(logged_report, sweep, capsys):
    report, run = logged_report
    assert main([str(sweep["dir"]), "--format", "csv"]) == 0
    printed = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    table = run.table(table_key(report))
    assert table["columns"] == printed[0]
    assert {"mean", "ci95_low", "ci95_high", "diff", "p_value"} <= set(table["columns"])
    assert len(table["data"]) == len(printed) - 1 == 3
    for logged, shown in zip(table["data"], printed[1:]):
        for value, text in zip(logged, shown):
            if isinstance(value, float):
                assert value == pytest.approx(float(text))
            else:
                assert ("" if value is None else str(value)) == text
    images = {key for key, value in run.summary.items()
              if isinstance(value, dict) and value.get("_type") == "image-file"}
    assert images == {"plots/test_acc_bars", "plots/learning_curves", "plots/reliability"}
    for key in images:
        assert (run.files / run.summary[key]["path"]).stat().st_size > 5000


def test_the_summary_names_the_best_group_and_the_callers_verdict(logged_report, sweep):
    report, run = logged_report
    best = report.rows[0]
    assert best.label == "regularizer=cutmix"  # the fixture's cutmix runs are the most accurate
    assert run.summary["best_group"] == best.label
    assert run.summary["best_mean"] == pytest.approx(sum(sweep["values"]["cutmix"]) / 4)
    assert run.summary["best_diff"] == pytest.approx(best.comparison.diff)
    assert run.summary["verdict"] == "cutmix helps"
