"""Faults through the real CLI: SIGKILL and SIGTERM mid-training, a NaN loss, failing and interrupted sweep jobs."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
# Mixing and dropout draw from their own and the global random streams: a resume must replay both exactly.
RUN = ["+exp=cutmix", "regularizer=[cutmix,dropout]", "trainer.max_epochs=5", "backbone.widths=[8,16]"]
TIMING = ("images_per_s", "train_time_s", "epoch_time_s")


@pytest.fixture
def start(start_regbench):
    """Start `regbench train ARGS` in tmp_path without waiting for it."""
    return lambda *args: start_regbench("train", *args)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def history(run_dir: Path) -> list[list[str]]:
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in TIMING]
    return [[row.split(",")[i] for i in keep] for row in lines]


def test_killed_and_terminated_runs_resume_to_the_uninterrupted_result(run_regbench, start, tmp_path):
    reference = run_regbench("train", *RUN, "logger=none", "hydra.run.dir=reference")
    assert reference.returncode == 0, reference.stderr
    expected = metrics(tmp_path / "reference")

    killed = start(*RUN, "logger=none", "hydra.run.dir=killed")
    wait_for(tmp_path / "killed" / "checkpoints" / "last.ckpt", killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert metrics(tmp_path / "killed")["status"] == "running"

    terminated = start(*RUN, "logger=wandb", "hydra.run.dir=terminated")
    wait_for(tmp_path / "terminated" / "checkpoints" / "last.ckpt", terminated)
    terminated.send_signal(signal.SIGTERM)
    _, stderr = terminated.communicate(timeout=120)
    assert terminated.returncode == 143, stderr
    assert metrics(tmp_path / "terminated")["status"] == "interrupted"
    assert (tmp_path / "terminated" / "checkpoints" / "last.ckpt").is_file()

    for name, first_attempt, logger in (("killed", "killed", "logger=none"),
                                        ("terminated", "interrupted", "logger=wandb")):
        relaunch = run_regbench("train", *RUN, logger, f"hydra.run.dir={name}")
        assert relaunch.returncode == 0, relaunch.stderr
        resumed = metrics(tmp_path / name)
        assert resumed["status"] == "completed"
        assert [attempt["status"] for attempt in resumed["attempts"]] == [first_attempt]
        assert resumed["metrics"] == expected["metrics"] and resumed["calibration"] == expected["calibration"]
        assert history(tmp_path / name) == history(tmp_path / "reference")
    # The resumed W&B run is the same run: both attempts logged under one id.
    ids = {path.name.rsplit("-", 1)[1] for path in (tmp_path / "terminated" / "wandb").glob("offline-run-*")}
    assert len(ids) == 1 and len(list((tmp_path / "terminated" / "wandb").glob("offline-run-*"))) == 2

    again = run_regbench("train", *RUN, "logger=none", "hydra.run.dir=killed")
    assert again.returncode == 0 and "already completed with this config; skipped" in again.stdout
    assert metrics(tmp_path / "killed")["metrics"] == expected["metrics"]


def test_a_nan_loss_stops_the_run_at_once_with_a_reason(run_regbench, tmp_path):
    result = run_regbench("train", "logger=none", "optim.lr=1e30", "hydra.run.dir=nan")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "the training loss became nan at epoch 0" in result.stderr
    payload = metrics(tmp_path / "nan")
    assert payload["status"] == "failed" and payload["error"].startswith("TrainingDiverged: the training loss became")
    assert not (tmp_path / "nan" / "checkpoints").exists()  # stopped within the first epoch


def test_a_failing_job_does_not_stop_the_sweep_and_a_relaunch_skips_what_completed(run_regbench, tmp_path):
    args = ["train", "-m", "logger=none", "trainer.max_epochs=1", "backbone.widths=[8]", "optim.lr=0.05,1e30",
            "hydra.sweep.dir=sweep"]
    first = run_regbench(*args)
    assert first.returncode == 1
    assert "regbench train: job 1 failed: the training loss became nan" in first.stderr
    assert "sweep sweep: 2 jobs, 1 completed (0 already done and skipped, 0 resumed), 1 failed" in first.stderr
    jobs = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["jobs"]
    assert [(job["job"], job["status"], job["metrics"]) for job in jobs] == [
        (0, "completed", "0/metrics.json"), (1, "failed", "1/metrics.json")]

    second = run_regbench(*args)
    assert second.returncode == 1
    index = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(index["launches"]) == 2
    assert [(job["status"], job["outcome"], job["launch"]) for job in index["jobs"]] == [
        ("completed", "skipped", 1), ("failed", None, 1)]
    assert [a["status"] for a in metrics(tmp_path / "sweep" / "1")["attempts"]] == ["failed"]


def test_an_interrupted_sweep_resumes_its_unfinished_job(run_regbench, start, tmp_path):
    args = ["-m", "logger=none", "trainer.max_epochs=4", "backbone.widths=[8]", "seed=0,1", "hydra.sweep.dir=sweep"]
    sweep = start(*args)
    wait_for(tmp_path / "sweep" / "1" / "checkpoints" / "last.ckpt", sweep)
    sweep.send_signal(signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, stderr
    statuses = [job["status"] for job in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["jobs"]]
    assert statuses == ["completed", "interrupted"]

    relaunch = run_regbench("train", *args)
    assert relaunch.returncode == 0, relaunch.stderr
    jobs = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["jobs"]
    assert [(job["status"], job["outcome"]) for job in jobs] == [("completed", "skipped"), ("completed", "resumed")]
    resumed = metrics(tmp_path / "sweep" / "1")
    assert resumed["epochs"] == 4 and [a["status"] for a in resumed["attempts"]] == ["interrupted"]


def test_ctrl_c_marks_the_run_interrupted_and_exits_130(start, tmp_path):
    run = start("logger=none", "trainer.max_epochs=100", "backbone.widths=[8]", "hydra.run.dir=run")
    wait_for(tmp_path / "run" / "checkpoints" / "last.ckpt", run)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert metrics(tmp_path / "run")["status"] == "interrupted"
