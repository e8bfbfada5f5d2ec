"""`regbench soup PATH... --recipe uniform|greedy`: every ingredient, group and output directory is checked
without torch, then every checkpoint is read and checked against the backbone, and only then is any soup cooked
and written; a mistake is one line with exit code 2 and nothing written. Runs on this machine, on finished
sweeps from any launcher (local or SLURM)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from regbench.command import CommandParser, run_command
from regbench.init.source import CHECKPOINT_SELECTORS
from regbench.rundir_format import MetricsKey
from regbench.soups.ingredients import check_out_dir, check_shared, find_ingredients, group_by

PROG = "regbench soup"
RECIPES = ("uniform", "greedy")


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description=(
        "Average the weights of completed runs fine-tuned from one checkpoint (Wortsman et al., Model soups, "
        "ICML 2022), recompute BatchNorm statistics on the training data, evaluate on the validation and test "
        "splits and write a run directory that `regbench compare` reads beside the ingredients."))
    parser.add_argument("paths", nargs="+", metavar="PATH", help="sweep or run directories (searched recursively)")
    parser.add_argument("--recipe", required=True, choices=RECIPES,
                        help="uniform: average every ingredient; greedy: add ingredients in order of validation "
                             "accuracy while the soup's validation accuracy does not drop")
    parser.add_argument("--checkpoint", default="last", choices=sorted(CHECKPOINT_SELECTORS),
                        help="which checkpoint of each run to average (default: last, the final fine-tuned "
                             "weights, as the paper)")
    parser.add_argument("--by", metavar="KEY", help="one soup per value of this config key, e.g. optim.lr")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="the soup's run directory (default: FIRST_PATH/soup_RECIPE; with --by, one "
                             "subdirectory KEY=VALUE per soup)")
    return parser


def soup(args: argparse.Namespace) -> None:
    groups = group_by(find_ingredients(args.paths, args.checkpoint), args.by)
    out = args.out if args.out is not None else Path(args.paths[0]) / f"soup_{args.recipe}"
    plans = []
    for label, ingredients in sorted(groups.items()):
        check_shared(ingredients, label)
        target = out / label if label else out
        check_out_dir(target)
        plans.append((label, ingredients, target))
    from regbench.soups.cook import cook, prepare, write_soup  # torch: only once the inputs are checked

    kitchens = [(label, prepare(ingredients), target) for label, ingredients, target in plans]
    for label, kitchen, target in kitchens:
        started = time.perf_counter()
        cooked = cook(kitchen, args.recipe)
        metrics = write_soup(kitchen, cooked, target, label, started)[MetricsKey.METRICS]
        best = cooked["best_ingredient"]
        print(f"{PROG}: {target}: {args.recipe} soup of {len(cooked['chosen'])} of {len(kitchen.states)} "
              f"ingredients: val_acc {metrics['val_acc']:.4f}, test_acc {metrics['test_acc']:.4f} (best "
              f"ingredient val_acc {best['val_acc']:.4f}: {best['run_dir']})", flush=True)


def main(argv: list[str]) -> int:
    return run_command(PROG, _parser(), soup, argv)
