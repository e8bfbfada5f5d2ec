"""Sweeps on SLURM (the `hydra/launcher=slurm` preset): hydra-submitit-launcher's own launch, with a submitit
executor whose jobs always end.

submitit learns that a job ended from its result file or from `sacct`. Where accounting is off, `sacct` fails,
and a job that ends without writing a result (scancel, out of memory, node failure, SIGKILL) is waited for
forever. Here the jobs are followed with `squeue` once `sacct` fails: a job squeue no longer lists has ended.
A job that ended without a result is recorded as failed in sweep.json and the sweep goes on, so it still ends with
its summary and a non-zero exit code.

RegbenchSlurmExecutor is a submitit executor plugin (registered in pyproject.toml): the launcher
(hydra_plugins.regbench_launcher) names it, and the plugin's launch submits with it and waits for its jobs.
Submitit loads this module in every process that looks up its executors, the jobs included, so it stays light.
"""
from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig
from submitit.core.utils import DelayedSubmission, FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmExecutor, SlurmInfoWatcher, SlurmJob

from regbench.errors import UserError, one_line
from regbench.rundir_format import FAILED
from regbench.sweepdir_format import FINAL_STATUSES, IndexKey, JobKey, SweepIndex, objective
from regbench.sweeps.launchers import SUBMITIT_EXECUTOR

log = logging.getLogger(__name__)

# The state of a job squeue no longer lists: it ended, and without sacct nobody can say how.
LEFT_QUEUE = "LEFT_QUEUE"


def run_command(command: list[str]) -> subprocess.CompletedProcess | str:
    """The finished command, or why it could not run."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)


def failure(done: subprocess.CompletedProcess | str) -> str:
    if isinstance(done, str):
        return done
    return one_line(Exception(done.stderr)) if done.stderr.strip() else f"exit status {done.returncode}"


class SqueueFallbackWatcher(SlurmInfoWatcher):
    """Job states from sacct while it works, from squeue once it fails (accounting off). Through squeue a job is
    done only when it has left the queue: a listed job (PENDING, CONFIGURING, REQUEUE_HOLD...) is still coming.

    `update` is the one override that touches submitit's private state (`_registered`, `_finished`, `_info_dict`,
    `_last_status_check`): InfoWatcher has no hook for a status command that fails, its own `update` logs the
    failure and keeps waiting. pyproject.toml pins submitit to the releases this was checked against."""

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self.sacct_error: str | None = None

    def read_squeue(self, job_ids: set[str], done: subprocess.CompletedProcess) -> dict[str, dict[str, str]] | None:
        """States of `job_ids` (`27_0`, or `27` outside arrays) from `squeue -h --array -o %i|%T|%N`: the listed
        state, or LEFT_QUEUE for a job it does not list. None when squeue did not answer: nothing is concluded."""
        # squeue leaves out jobs that ended, and answers "Invalid job id specified" once it knows none of the ids.
        if done.returncode != 0 and "Invalid job id specified" not in done.stderr:
            return None  # e.g. the controller is unreachable, while the jobs may well run on
        listed = self.read_info("JobID|State|NodeList\n" + (done.stdout if done.returncode == 0 else ""))
        return {job_id: listed.get(job_id, {"JobID": job_id, "State": LEFT_QUEUE}) for job_id in job_ids}

    def _sacct_states(self) -> dict[str, dict[str, str]] | None:
        done = run_command(self._make_command())
        if isinstance(done, subprocess.CompletedProcess) and done.returncode == 0:
            return self.read_info(done.stdout)
        self.sacct_error = failure(done)
        # Said once: sacct is not asked again, as every call would fail the same way.
        log.warning("sacct failed (%s); following the SLURM jobs with squeue instead", self.sacct_error)
        return None

    def _squeue_states(self, job_ids: set[str]) -> dict[str, dict[str, str]] | None:
        main_ids = sorted({job_id.split("_")[0] for job_id in job_ids})  # an array's id covers all its tasks
        done = run_command(["squeue", "-h", "--array", "-o", "%i|%T|%N", "-j", ",".join(main_ids)])
        states = self.read_squeue(job_ids, done) if isinstance(done, subprocess.CompletedProcess) else None
        if states is None:
            log.warning("squeue failed (%s); asking again later", failure(done))
        return states

    def update(self) -> None:
        to_check = self._registered - self._finished
        if not to_check:
            return
        states = self._sacct_states() if self.sacct_error is None else None
        if self.sacct_error is not None:  # failed now or earlier
            states = self._squeue_states(to_check)
        self._info_dict.update(states or {})
        self._last_status_check = time.time()
        for job_id in to_check:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        state = self.get_state(job_id, mode=mode)  # updates first, so sacct_error is known below
        if self.sacct_error is None:
            return super().is_done(job_id, mode="cache")
        return state == LEFT_QUEUE


class SqueueFollowedJob(SlurmJob):
    """A SLURM job followed by the squeue-aware watcher, whose wait always ends with something for Hydra."""

    # One watcher for every job of this process, as submitit does: one squeue call covers them all.
    watcher = SqueueFallbackWatcher(delay_s=60)

    def results(self) -> list[Any]:
        """Rank 0's result (only rank 0 reports the run; hydra-submitit-launcher reads the first result). For a
        job that ended without one, what its submitted launcher makes of it (`lost_job_result`) instead of an
        exception: the plugin waits for the jobs one by one, and one lost job must not end the sweep."""
        if self.num_tasks > 1:
            return self.task(0).results()
        try:
            return super().results()
        except (UncompletedJobError, FailedJobError) as err:
            submitted: DelayedSubmission = self.submission()  # the launcher and this job's arguments
            return [submitted.function.lost_job_result(self, err, *submitted.args)]


class RegbenchSlurmExecutor(SlurmExecutor):
    """submitit's SLURM executor whose jobs are SqueueFollowedJobs, and whose refusal by sbatch is one line."""

    @classmethod
    def name(cls) -> str:
        return SUBMITIT_EXECUTOR

    def _internal_process_submissions(self, delayed_submissions: list[DelayedSubmission]) -> list[SqueueFollowedJob]:
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # submitit prints what sbatch said when it refuses; one line below
                submitted = super()._internal_process_submissions(delayed_submissions)
        except FailedJobError as err:
            raise UserError(f"sbatch refused the jobs: {one_line(err)}") from None
        sys.stderr.write(said.getvalue())  # e.g. warnings
        # The same jobs, seen through the squeue-aware watcher (submitit makes array tasks plain SlurmJobs).
        return [SqueueFollowedJob(folder=self.folder, job_id=job.job_id, tasks=range(job.num_tasks))
                for job in submitted]


def lost_job_note(job: SlurmJob, err: Exception) -> str:
    """One line on a job that ended without a result, for sweep.json and the summary."""
    log_path = job.task(0).paths.stderr
    if isinstance(err, FailedJobError):
        return f"SLURM job {job.job_id} raised an error outside the run; see {log_path}"
    state = job.state
    if state == LEFT_QUEUE:
        return (f"SLURM job {job.job_id} left the queue without a result (cancelled, out of memory, killed, or its "
                f"node failed; without sacct the cause is unknown); see {log_path}")
    return f"SLURM job {job.job_id} ended without a result (state {state}); see {log_path}"


def record_lost_job(index: SweepIndex, num: int, overrides: Sequence[str], note: str) -> None:
    """Put a job that ended without a result in sweep.json: a final state it recorded itself in this launch
    (e.g. interrupted by SIGTERM) is kept, with the note added; otherwise (still `running`, or it never
    started) it failed."""
    current = index.read()
    launch = len(current[IndexKey.LAUNCHES]) - 1
    entry = next((job for job in current[IndexKey.JOBS]
                  if job[JobKey.JOB] == num and job.get(JobKey.LAUNCH) == launch), None)
    if entry is not None and entry.get(JobKey.STATUS) in FINAL_STATUSES:
        index.record_job(num, error="; ".join(filter(None, (entry.get(JobKey.ERROR), note))))
    else:
        index.record_job(num, overrides=list(overrides), status=FAILED, outcome=None, error=note)


def report_lost_job(job: SlurmJob, err: Exception, num: int, overrides: Sequence[str],
                    config: DictConfig) -> JobReturn:
    """Record sweep job `num`, whose SLURM job ended without a result, and what Hydra gets for it."""
    note = lost_job_note(job, err)
    record_lost_job(SweepIndex(Path(str(config.hydra.sweep.dir))), num, overrides, note)
    print(f"regbench train: job {num} failed: {note}", file=sys.stderr, flush=True)
    # COMPLETED to Hydra, as for a job that failed inside (regbench.job): one failed job must not end the sweep.
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=objective(config, None))
