"""A sweep run as `regbench train -m ...` in a child process, for the commands that drive one (`reproduce`,
`score`): the child is exactly the command a user could type, so sweep.json, skip and resume, launchers and
every override work as in any sweep."""
from __future__ import annotations

import signal
import subprocess

from regbench.errors import EXIT_ON_INTERRUPT, EXIT_ON_SIGTERM, ReportedError


class SweepInterrupted(ReportedError):
    """Ctrl-C or SIGTERM stopped the sweep; its jobs recorded themselves interrupted and resume on relaunch."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def run_child_sweep(command: list[str], interrupted: str) -> int:
    """Run `command` and return its exit code. SIGTERM (a scheduler stopping this process) is passed on; Ctrl-C
    reaches the child from the terminal. A stopped sweep raises SweepInterrupted: `interrupted` says what was
    stopped and how to resume it."""
    child = subprocess.Popen(command)
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
        raise SweepInterrupted(interrupted, EXIT_ON_SIGTERM if terminated else EXIT_ON_INTERRUPT)
    return code
