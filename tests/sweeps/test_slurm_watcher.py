"""The SLURM launcher's logic without a cluster: following jobs with squeue when sacct fails, and what a job that
ended without a result becomes in sweep.json."""
from __future__ import annotations

import logging
import math
import os
import re
import stat
import subprocess

import pytest
from hydra import compose, initialize_config_module
from hydra.core.utils import JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError

from regbench.sweeps import launchers, slurm
from regbench.errors import UserError
from regbench.sweeps.slurm import LEFT_QUEUE, SqueueFallbackWatcher, SqueueFollowedJob
from regbench.sweepdir_format import SweepIndex

SACCT_OFF = subprocess.CompletedProcess(["sacct"], 1, "", "Slurm accounting storage is disabled\n")


def answer(returncode: int, stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["squeue"], returncode, stdout, stderr)


class FakeCluster:
    """Stands in for sacct and squeue: records the commands and answers with the given outputs."""

    def __init__(self, sacct: subprocess.CompletedProcess | str, squeue: subprocess.CompletedProcess | str):
        self.sacct, self.squeue, self.commands = sacct, squeue, []

    def __call__(self, command: list[str]) -> subprocess.CompletedProcess | str:
        self.commands.append(command)
        return self.sacct if command[0] == "sacct" else self.squeue


@pytest.fixture
def cluster(monkeypatch):
    def install(sacct=SACCT_OFF, squeue=answer(0)) -> FakeCluster:
        fake = FakeCluster(sacct, squeue)
        monkeypatch.setattr(slurm, "run_command", fake)
        return fake
    return install


def watching(*job_ids: str) -> SqueueFallbackWatcher:
    watcher = SqueueFallbackWatcher()
    for job_id in job_ids:
        watcher.register_job(job_id)
    return watcher


# --- reading squeue ---------------------------------------------------------------------------------------------
def test_listed_jobs_keep_their_state_and_a_job_squeue_no_longer_lists_left_the_queue():
    states = SqueueFallbackWatcher().read_squeue({"27_0", "27_1", "27_2"},
                                                 answer(0, "27_0|RUNNING|vm\n27_2|PENDING|\n"))
    assert {job_id: info["State"] for job_id, info in states.items()} == {
        "27_0": "RUNNING", "27_1": LEFT_QUEUE, "27_2": "PENDING"}
    assert states["27_0"]["NodeList"] == "vm"


def test_a_pending_array_range_covers_each_of_its_tasks():
    states = SqueueFallbackWatcher().read_squeue({"27_2", "27_3", "27_4"}, answer(0, "27_[2-3%1]|PENDING|\n"))
    assert [states[job_id]["State"] for job_id in ("27_2", "27_3", "27_4")] == ["PENDING", "PENDING", LEFT_QUEUE]


def test_invalid_job_id_means_every_job_left_the_queue():
    states = SqueueFallbackWatcher().read_squeue(
        {"27", "28_0"}, answer(1, stderr="slurm_load_jobs error: Invalid job id specified\n"))
    assert {info["State"] for info in states.values()} == {LEFT_QUEUE}


def test_squeue_that_does_not_answer_concludes_nothing():
    unreachable = answer(1, stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
    assert SqueueFallbackWatcher().read_squeue({"27_0"}, unreachable) is None


# --- the watcher ------------------------------------------------------------------------------------------------
def test_without_sacct_a_job_that_left_squeue_is_done_and_a_listed_one_is_not(cluster, caplog):
    fake = cluster(squeue=answer(0, "27_0|RUNNING|vm\n"))
    watcher = watching("27_0", "27_1")
    with caplog.at_level(logging.WARNING, logger="regbench.sweeps.slurm"):
        assert watcher.is_done("27_1", mode="force")
        assert not watcher.is_done("27_0", mode="cache")
        watcher.update()
    assert watcher.get_state("27_1", mode="cache") == LEFT_QUEUE
    # sacct is asked once; squeue at each update, by the array's id
    assert [command[0] for command in fake.commands] == ["sacct", "squeue", "squeue"]
    assert fake.commands[-1][-2:] == ["-j", "27"]
    assert [r.getMessage() for r in caplog.records] == [
        "sacct failed (Slurm accounting storage is disabled); following the SLURM jobs with squeue instead"]


@pytest.mark.parametrize("state", ["CONFIGURING", "REQUEUE_HOLD", "SUSPENDED", "COMPLETING"])
def test_a_job_squeue_still_lists_is_not_done_whatever_its_state(cluster, state):
    # submitit's own rule (done unless PENDING/RUNNING/...) would give up on these and report a lost job
    cluster(squeue=answer(0, f"27|{state}|vm\n"))
    assert not watching("27").is_done("27", mode="force")


def test_when_squeue_fails_too_a_job_is_not_given_up(cluster):
    cluster(squeue="[Errno 2] No such file or directory: 'squeue'")
    watcher = watching("27")
    assert not watcher.is_done("27", mode="force")
    assert watcher.get_state("27", mode="cache") == "UNKNOWN"


def test_with_sacct_its_states_decide_and_squeue_is_not_asked(cluster):
    sacct = subprocess.CompletedProcess(["sacct"], 0,
                                        "JobID|State|NodeList\n27_0|RUNNING|vm\n27_1|CANCELLED by 0|vm\n", "")
    fake = cluster(sacct=sacct)
    watcher = watching("27_0", "27_1")
    assert watcher.is_done("27_1", mode="force") and not watcher.is_done("27_0", mode="force")
    assert {command[0] for command in fake.commands} == {"sacct"}


# --- a job that ended without a result --------------------------------------------------------------------------
@pytest.fixture
def lost_job(cluster, tmp_path, monkeypatch):
    """Array task 27_1 of a sweep in tmp_path/sweep, gone from squeue without writing a result."""
    cluster(squeue=answer(0, "27_0|RUNNING|vm\n"))

    class Job(SqueueFollowedJob):
        watcher = SqueueFallbackWatcher()  # not the process-wide one

    monkeypatch.setattr(Job, "_results_timeout_s", 0)  # no slow shared filesystem to wait for here
    (tmp_path / "sweep" / ".submitit" / "27_1").mkdir(parents=True)  # as the submission left it
    return Job(folder=tmp_path / "sweep" / ".submitit" / "%j", job_id="27_1")


def test_waiting_for_a_lost_job_ends(lost_job):
    assert isinstance(lost_job.exception(), UncompletedJobError)
    assert lost_job.state == LEFT_QUEUE


@pytest.mark.parametrize("optimized_metric", [None, "best_val_acc"])
def test_a_lost_job_is_recorded_failed_and_returns_like_a_failed_run(lost_job, tmp_path, optimized_metric):
    index = SweepIndex(tmp_path / "sweep")
    index.start_launch(["seed=0,1"], [], "default/sweep")
    index.record_job(1, overrides=["seed=1"], run_dir="1", status="running", outcome=None, error=None)
    config = OmegaConf.create({"optimized_metric": optimized_metric, "hydra": {"sweep": {"dir": str(index.sweep_dir)}}})
    returned = slurm.report_lost_job(lost_job, lost_job.exception(), 1, ["seed=1"], config)
    if optimized_metric is None:
        assert returned.return_value is None
    else:
        assert math.isnan(returned.return_value)  # what a failed run gives a hyperparameter search
    entry = index.read()["jobs"][0]
    assert entry["status"] == "failed" and entry["run_dir"] == "1"
    assert entry["error"].startswith("SLURM job 27_1 left the queue without a result")
    assert entry["error"].endswith("27_1_0_log.err")


def test_a_final_state_the_job_recorded_itself_is_kept_with_the_note(tmp_path):
    index = SweepIndex(tmp_path)
    index.start_launch([], [], "default/sweep")
    index.record_job(0, overrides=["seed=0"], status="interrupted", error="SIGTERM")
    slurm.record_lost_job(index, 0, ["seed=0"], "SLURM job 27_0 left the queue")
    assert {k: index.read()["jobs"][0][k] for k in ("status", "error")} == {
        "status": "interrupted", "error": "SIGTERM; SLURM job 27_0 left the queue"}


def test_a_job_that_never_started_or_finished_in_an_earlier_launch_is_failed_in_this_one(tmp_path):
    index = SweepIndex(tmp_path)
    index.start_launch([], [], "default/sweep")
    index.record_job(0, overrides=["seed=0"], status="completed", error=None)
    index.start_launch([], [], "default/sweep")  # relaunched; job 0 was cancelled while pending, job 1 is new
    for num in (0, 1):
        slurm.record_lost_job(index, num, [f"seed={num}"], "lost")
    assert [(job["job"], job["launch"], job["status"], job["error"]) for job in index.read()["jobs"]] == [
        (0, 1, "failed", "lost"), (1, 1, "failed", "lost")]


# --- the plugin's own launch, with a fake sbatch -------------------------------------------------------------------
def fake_command(folder, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(cluster, tmp_path, monkeypatch):
    """sbatch that accepts every job as job 27 (or refuses with SBATCH_REFUSAL), srun for submitit's check that
    SLURM is here, and a cluster without sacct whose squeue lists none of the jobs: each ends without a result."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake_command(folder, "sbatch", 'if [ -n "$SBATCH_REFUSAL" ]; then echo "$SBATCH_REFUSAL" >&2; exit 1; fi\n'
                                   'echo "Submitted batch job 27"')
    fake_command(folder, "srun", "exit 0")
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    cluster(squeue=answer(0))
    monkeypatch.setattr(SqueueFollowedJob, "watcher", SqueueFallbackWatcher())  # not the process-wide one
    monkeypatch.setattr(SqueueFollowedJob, "_results_timeout_s", 0)  # no slow shared filesystem to wait for here
    # An earlier in-process Hydra run may have left root handlers on streams pytest has closed since; the plugin's
    # log lines would then print logging errors into the captured stderr.
    monkeypatch.setattr(logging.root, "handlers", [])


def slurm_launcher(sweep, *overrides: str):
    """The launcher Hydra would make for a sweep with the slurm preset and `overrides`, set up for `sweep`."""
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={sweep}", *overrides],
                      return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    return launcher


def test_the_plugins_launch_sets_the_sweep_dir_mode_and_converts_nested_parameters(fake_slurm, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    launcher = slurm_launcher(sweep, "+hydra.sweep.mode=750", "+hydra.launcher.additional_parameters.comment=grid",
                              "hydra.launcher.setup=[module load cuda]")
    # As regbench's sweep callback does before the launch.
    SweepIndex(sweep).start_launch(["seed=0,1"], [], "default/sweep")
    returned = launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    assert stat.S_IMODE(sweep.stat().st_mode) == 0o750  # hydra.sweep.mode, an octal string to the plugin
    sbatch = (sweep / ".submitit" / "27" / "27_submission.sh").read_text()
    # the preset's nested additional_parameters and the added key, as sbatch flags; setup lines before the job
    assert {"#SBATCH --requeue", "#SBATCH --comment=grid", "#SBATCH --array=0-1%2"} <= set(sbatch.splitlines())
    assert "\nmodule load cuda\n" in sbatch
    # both jobs ended without a result: each is failed in sweep.json and comes back to Hydra like a failed run
    assert [(r.status, r.return_value, r.overrides) for r in returned] == [
        (JobStatus.COMPLETED, None, ["seed=0"]), (JobStatus.COMPLETED, None, ["seed=1"])]
    jobs = SweepIndex(sweep).read()["jobs"]
    assert [(job["job"], job["status"], job["error"].split(" without")[0]) for job in jobs] == [
        (0, "failed", "SLURM job 27_0 left the queue"), (1, "failed", "SLURM job 27_1 left the queue")]
    assert capsys.readouterr().err.count("regbench train: job ") == 2


def test_a_refusal_by_sbatch_is_one_line_and_exit_code_2(fake_slurm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SBATCH_REFUSAL", "sbatch: error: invalid partition specified: nope")
    launcher = slurm_launcher(tmp_path / "sweep", "hydra.launcher.partition=nope")
    with pytest.raises(SystemExit) as ended:
        launcher.launch([["seed=0"]], initial_job_idx=0)
    assert ended.value.code == UserError.exit_code
    assert capsys.readouterr().err == (
        "regbench train: error: sbatch refused the jobs: sbatch: error: invalid partition specified: nope\n")


# --- requests a regbench job cannot run in ----------------------------------------------------------------------
LAUNCHER = {"nodes": 1, "tasks_per_node": 1}


@pytest.mark.parametrize("launcher,trainer,message", [
    ({"nodes": 2}, {"devices": 1}, "hydra.launcher.nodes=2 is invalid: a regbench job runs on one node"),
    ({"tasks_per_node": 0}, {"devices": 1}, "hydra.launcher.tasks_per_node=0 is invalid: must be an integer > 0"),
    ({"tasks_per_node": 2}, {"devices": 1}, "hydra.launcher.tasks_per_node=2 needs trainer.devices=2, not 1"),
    ({"tasks_per_node": 2}, {"devices": "auto"}, "needs trainer.devices=2, not 'auto'"),
])
def test_requests_regbench_cannot_run_are_refused(monkeypatch, launcher, trainer, message):
    monkeypatch.setattr(launchers.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(UserError, match=re.escape(message)):
        launchers.check_slurm_launcher({**LAUNCHER, **launcher}, trainer)


def test_one_task_per_device_and_one_task_with_spawned_ranks_are_accepted(monkeypatch):
    monkeypatch.setattr(launchers.shutil, "which", lambda name: f"/usr/bin/{name}")
    launchers.check_slurm_launcher({"nodes": 1, "tasks_per_node": 2}, {"devices": 2})
    launchers.check_slurm_launcher({"nodes": 1, "tasks_per_node": 1}, {"devices": 2})


def test_without_sbatch_the_preset_says_where_to_run(monkeypatch):
    monkeypatch.setattr(launchers.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="needs SLURM's sbatch and srun on PATH"):
        launchers.check_slurm_launcher(LAUNCHER, {"devices": 1})


def test_an_install_without_the_executors_entry_point_says_to_reinstall(monkeypatch):
    monkeypatch.setattr(launchers.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(launchers, "entry_points", lambda group: [])
    with pytest.raises(UserError, match=r"regbench.sweeps.slurm:RegbenchSlurmExecutor, which this install does not "
                                        r"register: reinstall regbench"):
        launchers.check_slurm_launcher(LAUNCHER, {"devices": 1})
