"""Run a planned card: check its dataset is there, then the sweep as `regbench train -m` in a child process.

The child is exactly the command a user could type (printed first), so sweep.json, skip and resume, launchers
(`hydra/launcher=slurm`) and every override work as in any sweep.
"""
from __future__ import annotations

from regbench.claims.card import ARMS
from regbench.claims.arms import ARM_KEY
from regbench.claims.plan import SweepPlan, python_train_command
from regbench.sweeps.child import run_child_sweep


def preflight_sweep(plan: SweepPlan) -> None:
    """Check every job's config here (as `regbench train` will), then load the first job's dataset, so a typo
    or a dataset that is not there (MNIST not downloaded, a wrong data.root) is one line before any job starts
    rather than a failed run per job."""
    from hydra import initialize_config_module

    from regbench.sweeps.preflight import CONFIG_MODULE, compose_checked, preflight
    from regbench.data.module import load_images

    overrides = plan.train_args()[1:]  # without -m
    preflight(overrides, multirun=True)
    first_job = [f"seed={plan.seeds[0]}", f"+{ARM_KEY}={ARMS[0]}", *plan.shared_overrides(), plan.searchpath_override()]
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        resolved, _ = compose_checked(first_job)
    load_images(resolved["data"])


def run_sweep(plan: SweepPlan) -> int:
    """Run the sweep and return its exit code; Ctrl-C and SIGTERM stop it the way they stop any sweep."""
    print(f"regbench reproduce: {plan.card.name} ({plan.scale}): {plan.command_line()}", flush=True)
    return run_child_sweep(python_train_command(plan),
                           f"the sweep in {plan.sweep_dir} was interrupted; relaunch the same command to resume it")
