"""`regbench probe RUN_OR_SWEEP_DIR... [--data OVERRIDES...] [--checkpoint best|last] [--out DIR]`: parse, check
everything torch-free, then extract the runs' features and fit one probe per number of concatenated runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from regbench.command import CommandParser, run_command
from regbench.errors import check

PROG = "regbench probe"
# The probe's L2 strength and L-BFGS budget (see regbench.probing.linear).
DEFAULT_L2 = 1e-3
DEFAULT_MAX_ITER = 500


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Concatenate the penultimate features of completed runs (e.g. the seeds of a sweep) and train a "
                    "linear probe (L2 multinomial logistic regression) on a target dataset's training split, for "
                    "k = 1..K concatenated runs in seed order; report each probe's test accuracy (Zhang & Bottou, "
                    "ICML 2023). Writes DIR/probe.json. Runs from SLURM sweeps are probed here, on this machine.")
    parser.add_argument("paths", nargs="*", metavar="RUN_OR_SWEEP_DIR", help="completed runs (searched recursively)")
    parser.add_argument("--data", nargs="+", default=[], metavar="OVERRIDE",
                        help="the target as data config overrides, e.g. data=mnist, after the run directories "
                             "(default: the root config's data)")
    parser.add_argument("--checkpoint", default="best", help="best or last (default: best)")
    parser.add_argument("--out", default="probe", type=Path, help="output directory (default: ./probe)")
    parser.add_argument("--l2", default=DEFAULT_L2, type=float, help=f"L2 strength on the probe weights (default: "
                                                                     f"{DEFAULT_L2})")
    parser.add_argument("--max-iter", default=DEFAULT_MAX_ITER, type=int,
                        help=f"L-BFGS iterations (default: {DEFAULT_MAX_ITER})")
    return parser


def main(argv: list[str]) -> int:
    return run_command(PROG, _parser(), _probe, argv)


def _probe(args: argparse.Namespace) -> None:
    from regbench.init.source import CHECKPOINT_SELECTORS
    from regbench.probing.plan import check_out_dir, probe_runs, target_data_config

    check(args.checkpoint in CHECKPOINT_SELECTORS, "--checkpoint", args.checkpoint,
          f"allowed: {', '.join(CHECKPOINT_SELECTORS)}")
    check(args.l2 > 0, "--l2", args.l2, "must be a number > 0")
    check(args.max_iter > 0, "--max-iter", args.max_iter, "must be an integer > 0")
    runs = probe_runs(args.paths, args.checkpoint)
    target = target_data_config(args.data)
    check_out_dir(args.out)
    from regbench.probing.run import run_probe  # torch: only once everything given is checked

    run_probe(runs, target, args.out, {"l2": args.l2, "max_iter": args.max_iter, "checkpoint": args.checkpoint})
