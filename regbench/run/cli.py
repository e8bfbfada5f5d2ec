"""`regbench train [overrides]`: the Hydra app that trains one run, or a sweep with -m. Every config mistake is one
line before Hydra starts (the preflight checks), and a sweep's exit code says whether every job completed."""
from __future__ import annotations

import sys
import time
from importlib.resources import files

# Taken when the command starts, so the first run of this process can report how long it waited for its first step.
_PROCESS_START = [time.perf_counter()]

import hydra  # noqa: E402  (after the start-up clock on purpose)
from omegaconf import DictConfig  # noqa: E402

from regbench.command import report  # noqa: E402
from regbench.errors import ReportedError, UserError  # noqa: E402

# Hydra flags that print help or facts about Hydra itself: no config is checked.
HELP_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--version", "--shell-completion", "-sc"}
# The config groups a user selects, as `regbench train --help` lists them; the list-valued ones take [NAME,...].
SELECTED_GROUPS = ("data", "backbone", "norm", "regularizer", "optim", "sched", "calibrate", "eval", "logger",
                   "trainer")
PRESET_GROUPS = ("exp", "sweep", "hparams_search")
USAGE = """usage: regbench train [OVERRIDE ...]              train one run (e.g. norm=groupnorm seed=1 optim.lr=0.05)
       regbench train -m [OVERRIDE ...]           a sweep: comma lists sweep a key (seed=0,1,2 norm=batchnorm,layernorm)
       regbench train --cfg job [OVERRIDE ...]    print the composed config instead of training
       regbench train --hydra-help                Hydra's own flags
"""
# Hydra flags that compose another config than regbench's (the preflight checks regbench's own).
OTHER_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


@hydra.main(version_base="1.3", config_path="pkg://regbench.conf", config_name="config")
def hydra_train(cfg: DictConfig) -> float | None:
    from regbench.run.job import run_job

    try:
        return run_job(cfg, process_start=_PROCESS_START.pop() if _PROCESS_START else None)
    except ReportedError as err:  # a single run; a sweep records failed jobs and goes on
        sys.exit(report(err, "regbench train"))


def register_launchers() -> None:
    """Make regbench's launcher plugins known to Hydra. Hydra finds plugins by listing the hydra_plugins package's
    folders, which misses regbench's in an editable install (setuptools maps the package through an import hook)."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.regbench_launcher import RegbenchSlurmLauncher

    Plugins.instance().register(RegbenchSlurmLauncher)


def parse_hydra_args(args: list[str]):
    """The command line as Hydra will read it (its own parser), a mistake in it as one UserError line."""
    from hydra._internal.utils import get_args_parser

    def refuse(message: str):
        raise UserError(f"{message}; see regbench train --help")

    parser = get_args_parser()
    parser.error = refuse
    parsed = parser.parse_args(args)
    modes = [flag for flag, given in (("--run", parsed.run), ("--multirun", parsed.multirun),
                                      ("--cfg", parsed.cfg is not None)) if given]
    if len(modes) > 1:  # Hydra would refuse them with a traceback
        refuse(f"{' and '.join(modes)} cannot be combined: a command runs, sweeps or prints its config")
    return parsed


def check_train_args(args: list[str]) -> None:
    """Check the config a train command composes, also when it only prints it (--cfg, --resolve, --package):
    every mistake is then one line with exit code 2 before Hydra starts. Printing runs the torch-free checks
    only; a run also the checks that need the model code. A sweep's inactive components are warned about before
    any job starts (a single run warns as it starts)."""
    if (HELP_FLAGS | OTHER_CONFIG_FLAGS).intersection(arg.split("=", 1)[0] for arg in args):
        return
    from regbench.sweeps.preflight import preflight

    parsed = parse_hydra_args(args)
    prints_only = parsed.cfg is not None or parsed.resolve or parsed.package is not None
    checked = preflight(parsed.overrides, parsed.multirun, writes=not prints_only, builds=not prints_only)
    if parsed.multirun and not prints_only:
        from regbench.config.inactivity import warn_inactive

        for job in checked:
            settings = " ".join(o for o in job.overrides if not o.startswith("hydra."))
            warn_inactive(job.inactive, f"sweep job {settings}: ")


def options(group: str) -> list[str]:
    """The options of config group `group`: its YAML files in the config package (no config is composed)."""
    folder = files("regbench.conf").joinpath(group)
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def print_help() -> None:
    """The command's usage and every config group's options, listed from the config package's folders: Hydra's
    own help composes the config once per group it lists (about half a second)."""
    lines = [USAGE, "config groups (GROUP=NAME; regularizer, calibrate and eval take lists, e.g. regularizer=[cutmix,"
                    "ema]):"]
    lines += [f"  {group}: {', '.join(options(group))}" for group in SELECTED_GROUPS]
    lines += [f"  hydra/launcher: {', '.join(options('hydra/launcher'))} (Hydra's basic, one job after another, by "
              f"default)"]
    lines += ["", "presets (+GROUP=NAME, e.g. +exp=cutmix, +sweep=norm_grid):"]
    lines += [f"  {group}: {', '.join(options(group))}" for group in PRESET_GROUPS]
    lines += ["", "any key of the config can be set (trainer.max_epochs=5); README.md lists every option's paper."]
    print("\n".join(lines))


def main(args: list[str]) -> int:
    if {"--help", "-h"}.intersection(args):
        print_help()
        return 0
    try:
        check_train_args(args)
    except ReportedError as err:
        return report(err, "regbench train")
    sys.argv = ["regbench train", *args]
    register_launchers()  # also for presets that make a sweep without -m (hydra.mode=MULTIRUN)
    hydra_train()
    from regbench.sweeps.index import LAST_SWEEP  # set when a sweep ran (-m, or a preset with hydra.mode=MULTIRUN)

    return 1 if LAST_SWEEP.get("not_completed") else 0
