"""What preflight checks of a sweep's launcher before anything is submitted. Kept apart from regbench.sweeps.slurm,
which imports submitit and loads only when a SLURM sweep launches."""
from __future__ import annotations

import shutil
from importlib.metadata import entry_points
from typing import Any, Mapping

from regbench.errors import UserError

LAUNCHER_TARGET = "hydra_plugins.regbench_launcher.RegbenchSlurmLauncher"
# Launchers whose jobs run on other machines (SLURM nodes): their accelerators and memory are checked there.
REMOTE_LAUNCHERS = (LAUNCHER_TARGET, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
# The submitit executor the launcher submits with: regbench.sweeps.slurm.RegbenchSlurmExecutor, which submitit finds
# through the entry point pyproject.toml registers, as SUBMITIT_ENTRY_POINT says.
SUBMITIT_EXECUTOR = "regbenchslurm"
SUBMITIT_ENTRY_POINT = "regbench.sweeps.slurm:RegbenchSlurmExecutor"


def check_submitit_executor() -> None:
    """An install whose package metadata predates the executor's entry point would fail deep inside submitit."""
    if not any(point.name == "executor" and point.value == SUBMITIT_ENTRY_POINT
               for point in entry_points(group="submitit")):
        raise UserError(f"hydra/launcher=slurm needs regbench's submitit executor {SUBMITIT_ENTRY_POINT}, which this "
                        f"install does not register: reinstall regbench (pip install -e . in a checkout)")


def check_slurm_launcher(launcher: Mapping[str, Any], trainer: Mapping[str, Any]) -> None:
    """Refuse, before anything is submitted, a request that a regbench job cannot run in."""
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise UserError("hydra/launcher=slurm needs SLURM's sbatch and srun on PATH (run the sweep on a cluster's "
                        "login node; scripts/slurm_cluster.sh starts a one-node cluster on this machine)")
    check_submitit_executor()
    if launcher["nodes"] != 1:
        raise UserError(f"hydra.launcher.nodes={launcher['nodes']!r} is invalid: a regbench job runs on one node, "
                        f"with one task per GPU")
    tasks = launcher["tasks_per_node"]
    if not (isinstance(tasks, int) and not isinstance(tasks, bool) and tasks > 0):
        raise UserError(f"hydra.launcher.tasks_per_node={tasks!r} is invalid: must be an integer > 0")
    if tasks > 1 and trainer["devices"] != tasks:
        raise UserError(f"hydra.launcher.tasks_per_node={tasks} needs trainer.devices={tasks}, not "
                        f"{trainer['devices']!r}: SLURM starts one task per device")
