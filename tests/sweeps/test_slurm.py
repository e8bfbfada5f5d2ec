"""Sweeps through `hydra/launcher=slurm` on a real SLURM cluster (scripts/slurm_cluster.sh starts a one-node one),
through the real CLI, on tiny budgets."""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from regbench.sweeps.summary import SUMMARY_DIR

pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs a SLURM cluster (sbatch on PATH)")]

# The test cluster's node has a few CPUs and no GPU.
ON_TEST_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
                   "hydra.launcher.mem_gb=2"]
TINY = ["logger=none", "backbone.widths=[8,16]", "hydra.sweep.dir=sweep"]
BATCH_SIZE = 64  # conf/data/digits.yaml


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def slurm_ids(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep, from submitit's folders: `27` for a job or a whole array, `27_0`... for the
    tasks of an array."""
    folder = sweep / ".submitit"
    return sorted(p.name for p in folder.iterdir() if re.fullmatch(r"\d+(_\d+)?", p.name)) if folder.is_dir() else []


def wait_for(condition, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting {timeout:.0f} s for {what}"
        time.sleep(0.1)


@pytest.fixture
def sweep(tmp_path):
    """The sweep directory; whatever a failing test left queued or running there is cancelled afterwards."""
    path = tmp_path / "sweep"
    yield path
    ids = slurm_ids(path)
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


class BackgroundSweep:
    """`regbench train -m ARGS` running in the background, for tests that act on its jobs while it runs."""

    def __init__(self, cwd: Path, env: dict[str, str], args: tuple[str, ...]):
        self.log = cwd / "sweep.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "regbench", "train", "-m", *args], cwd=cwd, env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    def finish(self, timeout: float) -> tuple[int, str]:
        """Its exit code and output, once it has ended."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the sweep did not end within {timeout:.0f} s:\n{self.log.read_text()}")
        return self.proc.returncode, self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@pytest.fixture
def background(tmp_path, cli_env):
    started: list[BackgroundSweep] = []

    def start(*args: str) -> BackgroundSweep:
        started.append(BackgroundSweep(tmp_path, cli_env, args))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def test_two_job_sweep_completes_both_runs_and_its_wandb_summary(run_regbench, sweep, offline_wandb_run):
    with_wandb = [("logger=wandb" if arg == "logger=none" else arg) for arg in TINY]
    result = run_regbench("train", "-m", "seed=0,1", "trainer.max_epochs=1", *with_wandb, *ON_TEST_CLUSTER,
                          timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 jobs, 2 completed" in result.stdout
    assert [job_id.split("_")[1] for job_id in slurm_ids(sweep) if "_" in job_id] == ["0", "1"]  # an array
    for num in (0, 1):
        metrics = read_json(sweep / str(num) / "metrics.json")
        assert metrics["status"] == "completed" and metrics["seed"] == num
    index = read_json(sweep / "sweep.json")
    assert [(job["job"], job["status"], job["outcome"]) for job in index["jobs"]] == [
        (0, "completed", "new"), (1, "completed", "new")]
    # regbench's watcher, not submitit's, which logs its sacct failure at every poll
    assert "Bypassing sacct error" not in result.stdout + result.stderr
    # Once the launcher has waited for the cluster's jobs, the sweep's summary run joins their W&B group.
    summary = offline_wandb_run(sweep / SUMMARY_DIR / "wandb")
    assert summary.run["job_type"] == "summary" and summary.state["state"] == "finished"
    assert summary.run["run_group"] == offline_wandb_run(sweep / "0" / "wandb").run["run_group"] == "default/sweep"


def test_two_task_ddp_job_forms_one_group_and_writes_one_result(run_regbench, sweep):
    result = run_regbench("train", "-m", "seed=0", "trainer.max_epochs=1", *TINY, *ON_TEST_CLUSTER,
                          "hydra.launcher.tasks_per_node=2", "trainer.devices=2", "trainer.strategy=ddp",
                          "trainer.accelerator=cpu", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.relative_to(sweep).as_posix() for p in sweep.rglob("metrics.json")] == ["0/metrics.json"]
    assert read_json(sweep / "0" / "metrics.json")["status"] == "completed"
    index = read_json(sweep / "sweep.json")
    assert len(index["launches"]) == 1  # no rank started the sweep again
    assert [(job["job"], job["status"]) for job in index["jobs"]] == [(0, "completed")]
    # Both SLURM tasks ran the job, as ranks 0 and 1 of one group: each took half of the epoch's batches.
    (job_id,) = slurm_ids(sweep)
    for rank in (0, 1):
        assert f"global_rank={rank}(2)" in (sweep / ".submitit" / job_id / f"{job_id}_{rank}_log.out").read_text()
    images = int(next(csv.DictReader((sweep / "0" / "history.csv").open()))["train_images"])  # over both ranks
    checkpoint = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == math.ceil(images / 2 / BATCH_SIZE)


def test_requeued_job_resumes_from_its_checkpoint_and_completes(background, sweep):
    running = background("seed=0", "trainer.max_epochs=30", *TINY, *ON_TEST_CLUSTER)
    wait_for(lambda: (sweep / "0" / "checkpoints" / "last.ckpt").exists(), "the job's first checkpoint")
    (job_id,) = slurm_ids(sweep)
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True)
    returncode, output = running.finish(timeout=150)
    assert returncode == 0, output
    assert "1 jobs, 1 completed (0 already done and skipped, 1 resumed)" in output
    metrics = read_json(sweep / "0" / "metrics.json")
    assert metrics["status"] == "completed" and metrics["epochs"] == 30
    assert [attempt["status"] for attempt in metrics["attempts"]] == ["interrupted"]
    (job,) = read_json(sweep / "sweep.json")["jobs"]
    assert (job["status"], job["outcome"]) == ("completed", "resumed")


def test_cancelled_job_ends_the_sweep_with_the_other_job_completed_and_a_failure(background, sweep):
    # Job 1 is cancelled as soon as it starts; 300 epochs (a few seconds each ten) keep it training until then on a
    # loaded machine (30 epochs once ended before the cancel arrived).
    running = background("seed=0", "trainer.max_epochs=1,300", *TINY, *ON_TEST_CLUSTER)
    wait_for(lambda: (sweep / "1" / "config.yaml").exists(), "job 1 to start")
    cancelled = next(job_id for job_id in slurm_ids(sweep) if job_id.endswith("_1"))
    subprocess.run(["scancel", cancelled], check=True, capture_output=True)
    returncode, output = running.finish(timeout=120)  # without sacct, submitit alone would wait forever here
    assert returncode == 1, output
    summary = next(line for line in output.splitlines() if line.startswith("sweep "))
    assert "2 jobs, 1 completed" in summary and "not completed: job 1 (" in summary and cancelled in summary
    jobs = read_json(sweep / "sweep.json")["jobs"]
    assert jobs[0]["status"] == "completed" and read_json(sweep / "0" / "metrics.json")["status"] == "completed"
    assert jobs[1]["status"] in ("failed", "interrupted") and cancelled in jobs[1]["error"]


def test_a_request_sbatch_refuses_is_one_line(run_regbench, sweep):
    result = run_regbench("train", "-m", "seed=0", *TINY, *ON_TEST_CLUSTER, "hydra.launcher.partition=nope")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert "regbench train: error: sbatch refused the jobs: sbatch: error: invalid partition" in result.stderr


def test_scoring_runs_and_a_run_fine_tuned_from_one_of_them_are_slurm_jobs(run_regbench, sweep, tmp_path):
    # Issue 14: the procedures over several runs go through the same launcher as any sweep.
    light = ["logger=none", "backbone.widths=[8,16]"]
    scored = run_regbench("score", "scores", "--epochs", "1", "seed=0,1", *light, *ON_TEST_CLUSTER, timeout=300)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    runs = tmp_path / "scores" / "runs"
    assert [job_id.split("_")[1] for job_id in slurm_ids(runs) if "_" in job_id] == ["0", "1"]  # SLURM array tasks
    scores = read_json(tmp_path / "scores" / "scores.json")
    assert scores["seeds"] == [0, 1] and all(len(scores[name]) == 1295 for name in ("el2n", "grand", "grand_init"))

    tuned = run_regbench("train", "-m", "seed=0", "trainer.max_epochs=1", "init.from=scores/runs/seed_0/last",
                         *TINY, *ON_TEST_CLUSTER, timeout=180)
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    assert slurm_ids(sweep)
    metrics = read_json(sweep / "0" / "metrics.json")
    source, = metrics["init"]["sources"]
    assert metrics["status"] == "completed" and source["checkpoint"] == "last"
    assert source["path"] == str(runs / "seed_0" / "checkpoints" / "last.ckpt")
    assert source["source_config_hash"] == read_json(runs / "seed_0" / "metrics.json")["config_hash"]
