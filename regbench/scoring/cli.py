"""`regbench score DIR [--epochs E] [seed=...] [OVERRIDE ...]`: parse, then hand over to regbench.scoring.sweep.
Parsing and its mistakes import no torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from regbench.errors import ReportedError, UserError

PROG = "regbench score"
# The paper averages over 10 initializations and scores at epoch 20 (of 200, CIFAR-10).
DEFAULT_SEEDS = tuple(range(10))
DEFAULT_EPOCHS = 20


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UserError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, usage=f"{PROG} DIR [--epochs E] [seed=0,1,...] [OVERRIDE ...]",
        description="Train short runs over seeds (a `regbench train -m` sweep in DIR/runs/; relaunching resumes it), "
                    "then write the per-sample EL2N and GraNd scores of the training split, averaged over the seeds, "
                    "to DIR/scores.json for data.prune.scores (Paul et al., 2021, Deep Learning on a Data Diet).")
    parser.add_argument("directory", type=Path, metavar="DIR", help="where the runs and scores.json go")
    parser.add_argument("args", nargs="*", metavar="OVERRIDE",
                        help=f"Hydra overrides for every run; seed=0,1,... picks the seeds (default "
                             f"{DEFAULT_SEEDS[0]}-{DEFAULT_SEEDS[-1]})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"epochs each run trains before it is scored (default {DEFAULT_EPOCHS})")
    return parser


def score_plan(argv: list[str]):
    """The scoring plan of a command line (`regbench reproduce` checks its score steps with it too)."""
    from regbench.scoring.sweep import make_plan

    args = _parser().parse_intermixed_args(argv)
    return make_plan(args.directory, args.epochs, args.args, DEFAULT_SEEDS)


def main(argv: list[str]) -> int:
    try:
        plan = score_plan(argv)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except UserError as err:
        return _fail(err)
    try:
        from regbench.scoring.sweep import score

        path = score(plan)
    except ReportedError as err:
        return _fail(err)
    print(f"{PROG}: wrote {path}", flush=True)
    return 0


def _fail(err: ReportedError) -> int:
    print(f"{PROG}: error: {err}", file=sys.stderr)
    return err.exit_code
