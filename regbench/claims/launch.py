"""Run a planned card: check its dataset is there, then the sweep as `regbench train -m` in a child process.

The child is exactly the command a user could type (printed first), so sweep.json, skip and resume, launchers
(`hydra/launcher=slurm`) and every override work as in any sweep.
"""
from __future__ import annotations

import signal
import subprocess

from regbench.claims.card import ARMS
from regbench.claims.arms import ARM_KEY
from regbench.claims.plan import SweepPlan, python_train_command
from regbench.errors import ReportedError

EXIT_ON_SIGTERM = 128 + 15
EXIT_ON_INTERRUPT = 128 + 2


class SweepInterrupted(ReportedError):
    """Ctrl-C or SIGTERM stopped the sweep; its jobs recorded themselves interrupted and resume on relaunch."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


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
    child = subprocess.Popen(python_train_command(plan))
    # SIGTERM (a scheduler stopping this process) is passed on; Ctrl-C reaches the child from the terminal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue  # the child got the same Ctrl-C: let it record its jobs as interrupted
    finally:
        signal.signal(signal.SIGTERM, previous)
    terminated = code in (EXIT_ON_SIGTERM, -signal.SIGTERM)
    if terminated or code in (EXIT_ON_INTERRUPT, -signal.SIGINT):
        raise SweepInterrupted(f"the sweep in {plan.sweep_dir} was interrupted; relaunch the same command to resume "
                               f"it", EXIT_ON_SIGTERM if terminated else EXIT_ON_INTERRUPT)
    return code
