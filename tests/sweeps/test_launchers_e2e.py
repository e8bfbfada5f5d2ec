"""Launchers: jobs in parallel processes through submitit, and DDP ranks inside a sweep job without re-launching."""
from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.slow
TINY = ["logger=none", "trainer.max_epochs=1", "backbone.widths=[8,16]"]


def completed_jobs(sweep) -> list[dict]:
    index = json.loads((sweep / "sweep.json").read_text())
    return [job for job in index["jobs"] if job["status"] == "completed"]


def test_two_job_sweep_through_submitit_local(run_regbench, tmp_path):
    result = run_regbench("train", "-m", "hydra/launcher=local_parallel", *TINY, "seed=0,1", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(completed_jobs(tmp_path / "sweep")) == 2
    seeds = sorted(json.loads((tmp_path / "sweep" / str(n) / "metrics.json").read_text())["seed"] for n in (0, 1))
    assert seeds == [0, 1]
    assert list((tmp_path / "sweep" / ".submitit").iterdir())  # the jobs really went through submitit


def test_ddp_with_two_cpu_processes_inside_a_sweep_gives_one_result_per_job(run_regbench, tmp_path):
    result = run_regbench("train", "-m", *TINY, "seed=0,1", "trainer.accelerator=cpu", "trainer.devices=2",
                          "trainer.strategy=ddp", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Launching 2 jobs") == 1  # the sweep was not started again by a rank
    assert len(completed_jobs(tmp_path / "sweep")) == 2
    assert sorted(p.parent.name for p in (tmp_path / "sweep").rglob("metrics.json")) == ["0", "1"]
    for job in ("0", "1"):
        rows = list(csv.DictReader((tmp_path / "sweep" / job / "history.csv").open()))
        # Both ranks' shards count: the epoch saw the whole training set, as one process would.
        assert [row["train_images"] for row in rows] == ["1280"]
        assert float(rows[0]["train_loss"]) < 2.5
