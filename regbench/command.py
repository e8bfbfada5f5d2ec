"""What every regbench command shares: a parser whose mistakes are one line, and a runner that reports any
ReportedError as `regbench CMD: error: ...` with its exit code. Imports no torch, so parsing answers at once."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn

from regbench.errors import ReportedError, UserError


class CommandParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print its usage block and exit; a UserError keeps every mistake to one line and exit 2
        raise UserError(message)


def report(err: ReportedError, prog: str) -> int:
    """Print `err` as PROG's one error line; its exit code."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    return err.exit_code


def run_command(prog: str, parser: argparse.ArgumentParser, action: Callable[[argparse.Namespace], int | None],
                argv: list[str], intermixed: bool = False) -> int:
    """Parse `argv` (options and positionals interleaved when `intermixed`), then run `action`; its return value,
    0 when it returns None, is the exit code. --help exits 0; a mistake anywhere is one line."""
    try:
        args = parser.parse_intermixed_args(argv) if intermixed else parser.parse_args(argv)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except UserError as err:
        return report(err, prog)
    try:
        return action(args) or 0
    except ReportedError as err:
        return report(err, prog)
