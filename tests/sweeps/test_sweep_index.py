"""sweep.json: concurrent updates lose nothing; varying keys, W&B job types and the end-of-sweep summary."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from regbench.run.plan import HydraJob, job_type, plan_run
import pytest

from regbench.sweepdir_format import SweepIndex
from regbench.sweeps.index import summarize, varying_keys


def record_many(sweep_dir: str, job: int, updates: int) -> None:
    index = SweepIndex(Path(sweep_dir))
    for step in range(updates):
        index.record_job(job, status="running" if step < updates - 1 else "completed", error=f"step {step}")


def test_jobs_finishing_at_once_all_land_in_the_index(tmp_path):
    index = SweepIndex(tmp_path)
    index.start_launch(["seed=0,1"], ["seed"], "default/sweep")
    workers = [mp.get_context("fork").Process(target=record_many, args=(str(tmp_path), job, 20)) for job in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [entry["job"] for entry in saved["jobs"]] == list(range(6))
    assert all(entry["status"] == "completed" and entry["error"] == "step 19" and entry["launch"] == 0
               for entry in saved["jobs"])
    assert not list(tmp_path.glob(".sweep.json.tmp"))


def test_a_relaunch_is_a_new_launch_and_updates_the_same_entries(tmp_path):
    index = SweepIndex(tmp_path)
    index.start_launch(["seed=0,1"], [], "default/sweep")
    index.record_job(0, status="failed", error="boom")
    assert index.start_launch(["seed=0,1"], [], "default/sweep") == 1
    index.record_job(0, status="completed", outcome="resumed", error=None)
    saved = index.read()
    assert len(saved["launches"]) == 2 and len(saved["jobs"]) == 1
    assert saved["jobs"][0] | {"updated": None} == {"job": 0, "status": "completed", "outcome": "resumed",
                                                    "error": None, "launch": 1, "updated": None}


def test_a_job_field_that_no_reader_knows_is_refused(tmp_path):
    index = SweepIndex(tmp_path)
    with pytest.raises(ValueError, match=r"sweep.json job fields \['stauts'\] are not among"):
        index.record_job(0, stauts="completed")
    assert not (tmp_path / "sweep.json").exists()


def test_varying_keys_come_from_sweeps_on_the_command_line_and_in_sweeper_params():
    assert varying_keys(["seed=0,1,2", "norm=batchnorm,groupnorm", "optim.lr=0.1"], None) == ["norm"]
    assert varying_keys(["regularizer=[none],[cutmix,ema]"], {"data.noise.rate": "0.2,0.4", "seed": "0,1"}) == [
        "regularizer", "data.noise.rate"]
    assert varying_keys([], {"regularizer.cutmix.alpha": "interval(0.1, 2.0)"}) == ["regularizer.cutmix.alpha"]
    assert varying_keys(["norm=groupnorm"], {"optim.lr": "0.1"}) == []


def test_job_type_is_the_jobs_values_of_the_varying_keys():
    overrides = ["regularizer=[cutmix,ema]", "seed=2", "norm=groupnorm", "logger=none"]
    assert job_type(overrides, ["regularizer", "norm"]) == "regularizer=[cutmix,ema] norm=groupnorm"
    assert job_type(overrides, []) is None
    long_a = job_type(["regularizer=[" + ",".join(["cutmix"] * 30) + "]"], ["regularizer"])
    long_b = job_type(["regularizer=[" + ",".join(["cutmix"] * 31) + "]"], ["regularizer"])
    assert len(long_a) == len(long_b) == 64 and long_a != long_b


def test_summary_counts_this_launch_and_names_what_did_not_complete():
    index = {"sweep_dir": "multirun/x/t", "jobs": [
        {"job": 0, "status": "completed", "outcome": "skipped", "launch": 1},
        {"job": 1, "status": "completed", "outcome": "resumed", "launch": 1},
        {"job": 2, "status": "failed", "error": "the training loss became nan", "launch": 1},
        {"job": 3, "status": "failed", "error": "old", "launch": 0}]}
    line, not_completed = summarize(index, launch=1)
    assert not_completed == 1
    assert line.startswith("sweep multirun/x/t: 3 jobs, 2 completed (1 already done and skipped, 1 resumed), "
                           "1 failed, 0 interrupted")
    assert "job 2 (failed: the training loss became nan)" in line and "job 3" not in line


def test_sweep_jobs_share_a_group_and_get_a_job_type_and_a_stable_run_id(tmp_path):
    index = SweepIndex(tmp_path / "sweep")
    index.start_launch(["regularizer=[none],[cutmix]", "seed=0,1"], ["regularizer"], "reg_vs_baseline/sweep")
    cfg = {"run_dir": str(tmp_path / "sweep" / "3"), "exp_name": "reg_vs_baseline", "seed": 1}
    job = HydraJob(multirun=True, sweep_dir=tmp_path / "sweep", num=3, overrides=("regularizer=[cutmix]", "seed=1"))
    plan = plan_run(cfg, job)
    assert plan.wandb_group == "reg_vs_baseline/sweep" and plan.wandb_job_type == "regularizer=[cutmix]"
    # A job whose preset names another experiment, and a relaunch under another name, stay in the sweep's group.
    index.start_launch(["regularizer=[none],[cutmix]", "seed=0,1"], ["regularizer"], "relaunched/sweep")
    assert plan_run({**cfg, "exp_name": "cutmix"}, job).wandb_group == "reg_vs_baseline/sweep"
    assert plan.wandb_name == "regularizer=[cutmix] seed=1"
    assert plan.wandb_id == plan_run(cfg, job).wandb_id and len(plan.wandb_id) == 16
    single = plan_run({**cfg, "run_dir": str(tmp_path / "run")}, HydraJob(multirun=False))
    assert single.wandb_group == "reg_vs_baseline" and single.wandb_job_type is None
    assert single.wandb_id != plan.wandb_id
