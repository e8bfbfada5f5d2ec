"""A card at one scale as the `regbench train -m` sweep that runs it, in a directory that relaunches resume.

The sweep directory is `<root>/<card>/<scale>/` (root `reproductions` by default): the same command run again
finds it, skips the completed jobs and resumes the others. Seeds are the outer loop and the arm the inner one,
so each seed's pair finishes together and a longer seed list only appends jobs. `reproduce.json` in the
directory records what each arm runs; a relaunch that would run something else is refused rather than mixed in.
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regbench.rundir_format import write_text_atomic
from regbench.claims.arms import ARM_KEY, conf_groups, write_arms
from regbench.claims.card import ARMS, Card
from regbench.claims.steps import OVERRIDABLE_COMMANDS, Step
from regbench.errors import UserError
from regbench.sweeps.seed_overrides import split_seed_overrides

DEFAULT_ROOT = "reproductions"
PLAN_FILE = "reproduce.json"
ARMS_FOLDER = "arms"
# What reproduce sets itself: the sweep's place, the arm configs' search path, and the arms.
OWNED_KEYS = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.searchpath", ARM_KEY)


@dataclass(frozen=True)
class SweepPlan:
    card: Card
    scale: str
    sweep_dir: Path
    seeds: tuple[int, ...]
    user_overrides: tuple[str, ...]  # appended to every job, after the card's (the seed list taken out)

    @property
    def exp_name(self) -> str:
        """Names the W&B group of the card's jobs (with the sweep directory's name, the scale)."""
        return f"claim_{self.card.name}"

    def arm_overrides(self) -> dict[str, tuple[str, ...]]:
        return {arm: self.card.overrides_of(arm, self.scale) for arm in ARMS}

    def shared_overrides(self) -> list[str]:
        return [f"exp_name={self.exp_name}", *self.card.scales[self.scale].overrides, *self.user_overrides]

    def searchpath_override(self) -> str:
        return f"hydra.searchpath=[file://{(self.sweep_dir / ARMS_FOLDER).resolve()}]"

    def train_args(self) -> list[str]:
        return ["-m", f"seed={','.join(map(str, self.seeds))}", f"+{ARM_KEY}={','.join(ARMS)}",
                *self.shared_overrides(), self.searchpath_override(), f"hydra.sweep.dir={self.sweep_dir}"]

    def command_line(self) -> str:
        if self.card.is_procedure:  # its steps' commands differ by seed: the command that runs them all
            return shlex.join(["regbench", "reproduce", str(self.card.path), "--scale", self.scale, "--root",
                               str(self.sweep_dir.parent.parent), f"seed={','.join(map(str, self.seeds))}",
                               *self.user_overrides])
        return shlex.join(["regbench", "train", *self.train_args()])

    def step_args(self, step: Step) -> tuple[str, ...]:
        """A procedure step's arguments at this scale, placeholders unfilled: the card's, then for train and score
        steps the card name, the scale's overrides and the user's, then the scale's arguments for this step."""
        shared = self.shared_overrides() if step.command in OVERRIDABLE_COMMANDS else []
        return (*step.args, *shared, *self.card.scales[self.scale].step_args.get(step.name, ()))

    def record(self) -> dict[str, Any]:
        """What the jobs compute, per arm (launch-only settings such as hydra/launcher left out), and the seeds;
        a procedure card's arms are where their values are read, and its steps what each step runs."""
        shared = [o for o in self.shared_overrides() if not o.lstrip("+~").startswith("hydra")]
        record = {"card": self.card.name, "scale": self.scale, "seeds": list(self.seeds)}
        if self.card.is_procedure:
            return {**record, "arms": {arm: [where.describe()] for arm, where in self.card.step_arms.items()},
                    "steps": {step.name: [step.command, *self.step_args(step)] for step in self.card.steps}}
        return {**record, "arms": {arm: [*overrides, *shared] for arm, overrides in self.arm_overrides().items()}}


def make_plan(card: Card, scale: str, root: Path, user_overrides: list[str]) -> SweepPlan:
    seeds, kept = _split_seeds(user_overrides, card.scales[scale].seeds)
    return SweepPlan(card, scale, root / card.name / scale, seeds, tuple(kept))


def prepare(plan: SweepPlan) -> None:
    """Check that the directory holds this experiment or nothing, then write the arm configs."""
    path = plan.sweep_dir / PLAN_FILE
    if path.exists():
        _check_same_experiment(path, plan.record())
    if plan.card.is_procedure:
        plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    else:
        write_arms(plan.sweep_dir / ARMS_FOLDER, plan.card.name, plan.arm_overrides(), conf_groups())


def record_plan(plan: SweepPlan) -> None:
    """Record what the directory runs, once its jobs are known to be valid (so a typo never binds it)."""
    write_text_atomic(plan.sweep_dir / PLAN_FILE, json.dumps(plan.record(), indent=2) + "\n")


def _check_same_experiment(path: Path, record: dict[str, Any]) -> None:
    try:
        previous = json.loads(path.read_text())
        previous_arms, previous_seeds = previous["arms"], previous["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} cannot be read ({err}); move it away or use another --root") from None
    where = path.parent
    for arm in ARMS:
        if previous_arms.get(arm) != record["arms"][arm]:
            raise UserError(f"{where} holds a reproduction whose {arm} ran {' '.join(previous_arms.get(arm) or [])!r}, "
                            f"not {' '.join(record['arms'][arm])!r}; relaunch with the same card and overrides to "
                            f"resume it, or give another --root")
    if previous.get("steps") != record.get("steps"):
        raise UserError(f"{where} holds a reproduction whose steps ran {previous.get('steps')}, not "
                        f"{record.get('steps')}; relaunch with the same card and overrides to resume it, or give "
                        f"another --root")
    if record["seeds"][:len(previous_seeds)] != previous_seeds:
        raise UserError(f"{where} holds a reproduction with seeds {previous_seeds}; the seed list may only grow at "
                        f"its end (got {record['seeds']}), or give another --root")


def _split_seeds(overrides: list[str], card_seeds: tuple[int, ...]) -> tuple[tuple[int, ...], list[str]]:
    """The seeds to run (the user's `seed=...` replaces the card's) and the other overrides, checked."""
    seeds, others = split_seed_overrides(
        overrides, card_seeds, command="regbench reproduce", owned_keys=OWNED_KEYS,
        owned_note="the sweep directory is <--root>/<card>/<scale>", one_config="a card compares exactly two arms",
        min_seeds=2, example="seed=0,1,2,3,4")
    return seeds, [override.input_line for override in others]


def python_train_command(plan: SweepPlan) -> list[str]:
    """The sweep as this Python runs it (regbench may not be on the PATH, e.g. `python -m regbench`)."""
    return [sys.executable, "-m", "regbench", "train", *plan.train_args()]
