"""regbench's SLURM launcher as a Hydra plugin: Hydra instantiates launchers only from the hydra_plugins package.

Hydra imports every plugin module at start-up, so this one stays small and regbench.sweeps.slurm, which does the work,
is imported only when a sweep launches.
"""
from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

from regbench.sweeps.launchers import SUBMITIT_EXECUTOR


class RegbenchSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher, whose jobs are followed with squeue where sacct fails and whose jobs
    that end without a result are recorded as failed instead of being waited for (see regbench.sweeps.slurm).

    The plugin's own launch does everything (executor, sbatch parameters, sweep directory, waiting); only the
    submitit executor it names differs. `_EXECUTOR` is how the plugin's SLURM and local launchers differ; it is a
    private name, so pyproject.toml pins hydra-submitit-launcher to the release this was checked against."""

    _EXECUTOR = SUBMITIT_EXECUTOR

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.command import report
        from regbench.errors import ReportedError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except ReportedError as err:  # e.g. sbatch refused the jobs: one line, where Hydra would print a traceback
            raise SystemExit(report(err, "regbench train")) from None

    def lost_job_result(self, job: Any, error: Exception, sweep_overrides: list[str], job_dir_key: str, job_num: int,
                        job_id: str, singleton_state: dict) -> JobReturn:
        """What Hydra gets for a SLURM job that ended without a result; called by the job with the arguments it was
        submitted with (those of `__call__`)."""
        from regbench.sweeps.slurm import report_lost_job

        return report_lost_job(job, error, job_num, sweep_overrides, self.config)
