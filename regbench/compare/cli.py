"""`regbench compare`: command line entry; parses arguments, loads runs, prints the report, writes plots."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from regbench.compare.grouping import check_keys, detect_grouping_keys, parse_baseline
from regbench.compare.render import FORMATS, write_report
from regbench.compare.report import DEFAULT_METRIC, build_report
from regbench.compare.runs import RunCollection, load_run_dirs
from regbench.compare.wandb_source import load_wandb_runs
from regbench.command import CommandParser, run_command
from regbench.errors import UserError, check

PROG = "regbench compare"


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Aggregate completed runs over seeds, group them by the settings that vary, and compare "
                    "each group with a baseline (paired t-test by seed, else Welch).",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="run or sweep directories (searched recursively)")
    parser.add_argument("--metric", default=DEFAULT_METRIC,
                        help=f"metric from metrics.json (default: {DEFAULT_METRIC})")
    parser.add_argument("--baseline", metavar="KEY=VALUE[,...]",
                        help="the baseline group (default: regularizer=none when such a group exists)")
    parser.add_argument("--by", metavar="KEY[,KEY...]", help="group by these settings instead of the varying ones")
    parser.add_argument("--format", default="table", help=f"output format: {', '.join(FORMATS)} (default: table)")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="write PNG figures into DIR")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read runs from this W&B project")
    parser.add_argument("--group", metavar="G", help="with --wandb: only runs of this W&B group")
    return parser


def main(argv: list[str], wandb_api=None) -> int:
    """Run `regbench compare` with `argv`; `wandb_api` replaces `wandb.Api()` (tests pass a fake)."""
    return run_command(PROG, _parser(), lambda args: _compare(args, wandb_api), argv)


def _compare(args: argparse.Namespace, wandb_api) -> None:
    check(args.format in FORMATS, "--format", args.format, f"one of {', '.join(FORMATS)}")
    if not args.paths and args.wandb is None:
        raise UserError("no PATH given: give run or sweep directories, or --wandb ENTITY/PROJECT")
    check(args.group is None or args.wandb is not None, "--group", args.group, "only together with --wandb")
    check(args.plots is None or not args.plots.is_file(), "--plots", str(args.plots), "a directory, not a file")
    by = _split_keys(args.by) if args.by is not None else None
    baseline = parse_baseline(args.baseline) if args.baseline is not None else None

    runs = load_run_dirs(args.paths) if args.paths else RunCollection()
    if args.wandb is not None:
        runs.extend(load_wandb_runs(args.wandb, args.group, api=wandb_api))
    _report_skipped(runs)
    if not runs.completed:
        sources = ", ".join(args.paths + ([args.wandb] if args.wandb else []))
        raise UserError(f"no completed runs found in {sources}: need metrics.json with status 'completed'")

    if by is not None:
        check_keys(by, runs.completed)
    keys = by if by is not None else detect_grouping_keys(runs.completed)
    report = build_report(runs.completed, args.metric, keys, baseline)
    if report.runs_without_metric:
        _warn(f"left out {len(report.runs_without_metric)} runs without a finite {args.metric}: "
              + ", ".join(report.runs_without_metric))
    write_report(report, args.format, sys.stdout)
    if args.plots is not None:
        try:
            from regbench.compare.plots import write_plots  # matplotlib: only when plots are asked for

            written = write_plots(report, args.plots)
        except OSError as err:
            raise UserError(f"--plots {str(args.plots)!r} cannot be written: {err.strerror or err}") from err
        print(f"{PROG}: wrote {', '.join(str(path) for path in written)}", file=sys.stderr)


def _split_keys(text: str) -> list[str]:
    keys = list(dict.fromkeys(key.strip() for key in text.split(",") if key.strip()))
    check(bool(keys), "--by", text, "a comma-separated list of setting names, e.g. regularizer,norm")
    return keys


def _report_skipped(runs: RunCollection) -> None:
    for skipped in runs.malformed:
        _warn(f"skipped malformed run {skipped.source}: {skipped.reason}")
    statuses = Counter(skipped.reason for skipped in runs.not_completed)
    summary = f"{len(runs.completed)} completed runs"
    if statuses:
        summary += f"; ignored {len(runs.not_completed)} not completed (" + ", ".join(
            f"{status}: {count}" for status, count in sorted(statuses.items())) + ")"
    if runs.malformed:
        summary += f"; skipped {len(runs.malformed)} malformed"
    print(f"{PROG}: {summary}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
