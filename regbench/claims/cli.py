"""`regbench reproduce`: run a claim card (or all of them) and print the verdict; `--list` shows the cards.

Parsing, `--list` and the checks of the card name and the scale import no torch, so they answer at once.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from regbench.claims.card import SCALES, card_names, check_scale, load_card
from regbench.command import CommandParser, check_output_dir, check_output_file, run_command
from regbench.errors import ReportedError, UserError

PROG = "regbench reproduce"
DEFAULT_SCOREBOARD = "REPRODUCTIONS.md"


def _parser() -> argparse.ArgumentParser:
    from regbench.claims.plan import DEFAULT_ROOT

    parser = CommandParser(
        prog=PROG,
        usage=f"{PROG} NAME [--scale quick|paper] [--root DIR] [OVERRIDE ...]\n"
              f"       {PROG} --all [--scale quick|paper] [--root DIR] [--scoreboard FILE] [OVERRIDE ...]\n"
              f"       {PROG} --list",
        description="Run a claim card (conf/claim/NAME.yaml, or a card file) as a baseline-vs-treatment sweep in "
                    "ROOT/NAME/SCALE/ (relaunching resumes it) and judge the claim by the paired 95% CI.",
    )
    parser.add_argument("args", nargs="*", metavar="NAME|OVERRIDE",
                        help="the card, then Hydra overrides for every job (seed=0,1,... replaces the card's seeds)")
    parser.add_argument("--scale", default="quick", help=f"{' or '.join(SCALES)} (default: quick)")
    parser.add_argument("--root", default=DEFAULT_ROOT, type=Path,
                        help=f"where the sweeps go, as ROOT/CARD/SCALE (default: {DEFAULT_ROOT})")
    parser.add_argument("--list", action="store_true", help="list the cards and exit")
    parser.add_argument("--all", action="store_true", help="run every card, then write the scoreboard")
    parser.add_argument("--scoreboard", type=Path,
                        help=f"with --all: the scoreboard file (default: {DEFAULT_SCOREBOARD})")
    return parser


def main(argv: list[str]) -> int:
    return run_command(PROG, _parser(), lambda args: _reproduce(args, argv), argv, intermixed=True)


def _reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    if args.list:
        _check(not args.all and not args.args, "--list", "takes no card, overrides or --all")
        _list_cards()
        return 0
    check_scale(args.scale)
    _check(args.scoreboard is None or args.all, "--scoreboard", "only together with --all")
    check_output_dir(args.root, "--root")
    if args.all:
        check_output_file(args.scoreboard or Path(DEFAULT_SCOREBOARD), "--scoreboard")
        return _reproduce_all(args, argv)
    if not args.args:
        raise UserError(f"no card given: give NAME (one of {', '.join(card_names())}), --all or --list")
    from regbench.claims.reproduce import plan_card, reproduce

    reproduce(plan_card(args.args[0], args.scale, args.root, args.args[1:]))
    return 0


def _reproduce_all(args: argparse.Namespace, argv: list[str]) -> int:
    from regbench.sweeps.child import SweepInterrupted
    from regbench.claims.reproduce import plan_card, reproduce
    from regbench.claims.scoreboard import Entry, scoreboard_markdown, write_scoreboard

    started, load_at_start, entries = time.time(), os.getloadavg()[0], []
    for name in card_names():
        try:
            entries.append(Entry(name, reproduce(plan_card(name, args.scale, args.root, args.args))))
        except SweepInterrupted:
            raise
        except ReportedError as err:
            print(f"{PROG}: {name}: no verdict: {err}", file=sys.stderr, flush=True)
            entries.append(Entry(name, None, str(err)))
    path = args.scoreboard or Path(DEFAULT_SCOREBOARD)
    write_scoreboard(path, scoreboard_markdown(entries, args.scale, argv, started, load_at_start, args.root))
    judged = sum(entry.claim is not None for entry in entries)
    print(f"{PROG}: wrote {path}: {judged} of {len(entries)} cards judged", flush=True)
    return 0 if judged == len(entries) else 1


def _list_cards() -> None:
    names = card_names()
    width = max(map(len, names), default=0)
    for name in names:
        card = load_card(name)
        print(f"{name:<{width}}  {card.claim}  [{card.metric}; {card.paper}]")


def _check(ok: bool, flag: str, allowed: str) -> None:
    if not ok:
        raise UserError(f"{flag} {allowed}")
