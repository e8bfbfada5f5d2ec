"""`regbench score DIR [--epochs E] [seed=...] [OVERRIDE ...]`: parse, then hand over to regbench.scoring.sweep.
Parsing and its mistakes import no torch."""
from __future__ import annotations

import argparse
from pathlib import Path

from regbench.command import CommandParser, run_command

PROG = "regbench score"
# The paper averages over 10 initializations and scores at epoch 20 (of 200, CIFAR-10).
DEFAULT_SEEDS = tuple(range(10))
DEFAULT_EPOCHS = 20


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
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
    return _plan(_parser().parse_intermixed_args(argv))


def main(argv: list[str]) -> int:
    return run_command(PROG, _parser(), _score, argv, intermixed=True)


def _plan(args: argparse.Namespace):
    from regbench.scoring.sweep import make_plan

    return make_plan(args.directory, args.epochs, args.args, DEFAULT_SEEDS)


def _score(args: argparse.Namespace) -> None:
    from regbench.scoring.sweep import score

    path = score(_plan(args))
    print(f"{PROG}: wrote {path}", flush=True)
