"""regbench's SLURM launcher as a Hydra plugin: Hydra instantiates launchers only from the hydra_plugins package.

Hydra imports every plugin module at start-up, so this one stays small and regbench.sweeps.slurm, which does the work,
is imported only when a sweep launches.
"""
from typing import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class RegbenchSlurmLauncher(SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher whose jobs are followed with squeue where sacct fails, and whose
    jobs that end without a result are recorded as failed instead of being waited for (see regbench.sweeps.slurm)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from regbench.sweeps.slurm import launch

        return launch(self, job_overrides, initial_job_idx)
