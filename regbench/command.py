"""What every regbench command shares: a parser whose mistakes are one line, a runner that reports any
ReportedError as `regbench CMD: error: ...` with its exit code, and the check of a directory or file a command will
write. Imports no torch, so parsing answers at once."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
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


def nearest_existing(path: Path) -> Path:
    """`path` itself where it exists, else its closest ancestor that does."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet, which making `path` would create (None when `path`
    exists)."""
    existing = nearest_existing(path)
    return None if existing == path else existing / path.relative_to(existing).parts[0]


def check_output_dir(path: Path, key: str, given: Path | None = None) -> None:
    """Refuse, before anything is written, an output directory that cannot be created and written: a path that is
    or passes through a file, or one under a directory this process may not write (a read-only mount, or /sys,
    which root's permission bits do not show: a folder is made there and removed to find out). Messages name
    `given` (the file to be written in `path`) where there is one."""
    shown = str(given or path)
    existing = nearest_existing(path)
    if not existing.is_dir():
        what = "is" if existing == Path(shown) else "lies under"
        raise UserError(f"{key}={shown!r} is invalid: it {what} {str(existing)!r}, which is not a directory; "
                        f"choose another directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".regbench-write-check-", dir=existing))
    except OSError:
        raise UserError(f"{key}={shown!r} is invalid: {str(existing)!r} is not writable here; choose a directory "
                        f"you can write") from None


def check_output_file(path: Path, key: str) -> None:
    """Refuse a file a command will write that is a directory or lies where nothing can be written."""
    if path.is_dir():
        raise UserError(f"{key}={str(path)!r} is invalid: it is a directory; give a file name")
    check_output_dir(path.parent, key, given=path)
