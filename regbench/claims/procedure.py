"""Run a procedure card's steps, seed by seed, and read each arm's value per seed from the steps' outputs.

Each step is the regbench command a user could type (printed first), run in a child process in
`<sweep dir>/seed_<s>/<step>/`. A step that ends well leaves `<step>.json` beside its directory (the command it
ran); a relaunch skips such steps, and a train or score step that was interrupted resumes its own sweep.
"""
from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from regbench.claims.card import ARMS
from regbench.claims.plan import SweepPlan
from regbench.claims.steps import DIR_FIELD, SEED_FIELD, STEP_COMMANDS, Step, dig, placeholders, substitute
from regbench.errors import ReportedError
from regbench.rundir_format import CONFIG_FILE, METRICS_FILE, MetricsKey, read_json, write_text_atomic
from regbench.sweeps.child import run_child_sweep

DONE_SUFFIX = ".json"


def seed_dir(plan: SweepPlan, seed: int) -> Path:
    return (plan.sweep_dir / f"seed_{seed}").absolute()


def step_dir(plan: SweepPlan, seed: int, step: str) -> Path:
    return seed_dir(plan, seed) / step


def step_command(plan: SweepPlan, seed: int, step: Step) -> list[str]:
    """The step for this seed as `regbench COMMAND ...`, placeholders filled and its output place set."""
    values = {SEED_FIELD: str(seed), DIR_FIELD: str(step_dir(plan, seed, step.name)),
              **{earlier.name: str(step_dir(plan, seed, earlier.name)) for earlier in plan.card.steps}}
    args = [substitute(arg, values) for arg in plan.step_args(step)]
    out = str(step_dir(plan, seed, step.name))
    if step.command == "train":
        return ["train", "-m", *args, f"{STEP_COMMANDS['train']}={out}"]
    if step.command == "score":
        return ["score", out, *args]
    return [step.command, *args, STEP_COMMANDS[step.command], out]


def done_file(plan: SweepPlan, seed: int, step: str) -> Path:
    return seed_dir(plan, seed) / f"{step}{DONE_SUFFIX}"


def run_steps(plan: SweepPlan) -> None:
    """Every step of every seed, in order, skipping those that are done; a step that fails stops the run."""
    for seed in plan.seeds:
        for step in plan.card.steps:
            command = step_command(plan, seed, step)
            where = f"regbench reproduce: {plan.card.name} ({plan.scale}) seed {seed}, step {step.name}"
            done = done_file(plan, seed, step.name)
            if (read_json(done) or {}).get("command") == command:
                print(f"{where}: done, skipped", flush=True)
                continue
            print(f"{where}: {shlex.join(['regbench', *command])}", flush=True)
            seed_dir(plan, seed).mkdir(parents=True, exist_ok=True)
            code = run_child_sweep([sys.executable, "-m", "regbench", *command],
                                   f"step {step.name} of seed {seed} in {plan.sweep_dir} was interrupted; relaunch "
                                   f"the same command to resume it")
            if code != 0:
                raise ReportedError(f"step {step.name} of seed {seed} ended with exit code {code} (see its message "
                                    f"above); relaunch the same command to resume it")
            write_text_atomic(done, json.dumps({"command": command}, indent=2) + "\n")


def preflight_steps(plan: SweepPlan) -> None:
    """Check the first seed's train and score steps that need no earlier step's output, every job as the command
    will, so a typo in the card or the overrides is one line before any step starts (the other steps check their
    own inputs as they start)."""
    from regbench.sweeps.preflight import preflight

    seed = plan.seeds[0]
    for step in plan.card.steps:
        if any(field not in (SEED_FIELD, DIR_FIELD) for arg in step.args for field in placeholders(arg)):
            continue
        if step.command == "train":
            preflight(step_command(plan, seed, step)[2:], multirun=True, writes=False)
        elif step.command == "score":
            from regbench.scoring.cli import score_plan
            from regbench.scoring.sweep import check_runs

            check_runs(score_plan(step_command(plan, seed, step)[1:]))


def read_step_values(plan: SweepPlan) -> dict[str, dict[int, float]]:
    """arm -> seed -> the number its step wrote; a missing file or key, or a value that is not a finite number,
    is reported."""
    values: dict[str, dict[int, float]] = {arm: {} for arm in ARMS}
    for seed in plan.seeds:
        for arm in ARMS:
            where = plan.card.step_arms[arm]
            path = step_dir(plan, seed, where.step) / where.file.replace("{seed}", str(seed))
            document = read_json(path)
            if document is None:
                raise ReportedError(f"{arm} seed {seed}: {path} cannot be read; relaunch the same command to resume")
            try:
                value = dig(document, where.key)
            except KeyError:
                raise ReportedError(f"claim card {plan.card.path}: {arm}.key={where.key!r} is not in {path}") from None
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise ReportedError(f"{path}: {where.key} is {value!r}, not a finite number")
            values[arm][seed] = float(value)
    return values


def steps_run_summary(plan: SweepPlan) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """The training time of every run the steps wrote, the first run's package versions and its config (which
    names the logger the claim is logged with)."""
    wall_time, versions, config = 0.0, {}, {}
    for seed in plan.seeds:
        for metrics_path in sorted(seed_dir(plan, seed).rglob(METRICS_FILE)):
            summary = read_json(metrics_path) or {}
            wall_time += float(summary.get(MetricsKey.WALL_TIME_S) or 0.0)
            if not config and (metrics_path.parent / CONFIG_FILE).is_file():
                versions = summary.get(MetricsKey.VERSIONS) or {}
                config = yaml.safe_load((metrics_path.parent / CONFIG_FILE).read_text())
    return wall_time, versions, config
