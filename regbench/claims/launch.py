"""Run a planned card: check its dataset is there, then the sweep as `regbench train -m` in a child process.

The child is exactly the command a user could type (printed first), so sweep.json, skip and resume, launchers
(`hydra/launcher=slurm`) and every override work as in any sweep.
"""
from __future__ import annotations

from regbench.claims.plan import SweepPlan, python_train_command
from regbench.sweeps.child import run_child_sweep


def preflight_sweep(plan: SweepPlan) -> None:
    """Check every job's config here (as `regbench train` will), its dataset included, so a typo or a dataset
    that is not there (MNIST not downloaded, a wrong data.root) is one line before any job starts rather than a
    failed run per job."""
    from regbench.sweeps.preflight import preflight

    preflight(plan.train_args()[1:], multirun=True)  # without -m


def run_sweep(plan: SweepPlan) -> int:
    """Run the sweep and return its exit code; Ctrl-C and SIGTERM stop it the way they stop any sweep."""
    print(f"regbench reproduce: {plan.card.name} ({plan.scale}): {plan.command_line()}", flush=True)
    return run_child_sweep(python_train_command(plan),
                           f"the sweep in {plan.sweep_dir} was interrupted; relaunch the same command to resume it")
