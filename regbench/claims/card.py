"""Load and check a claim card: the paper, the claim, the two arms, the metric and the two scales.

A card is plain YAML (see conf/claim/ and the README). Loading it needs neither torch nor Hydra, so listing the
cards and refusing a bad name or scale answer at once. A procedure card also lists steps (see steps.py), and its
arms read their values from the steps' outputs instead of training with overrides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from regbench.claims.steps import (DIR_FIELD, SEED_FIELD, STEP_ARM_KEYS, STEP_COMMANDS, STEP_KEYS, STEP_NAME, Step,
                                   StepArm, owned_argument, placeholders)
from regbench.errors import UserError

SCALES = ("quick", "paper")
ARMS = ("baseline", "treatment")
# Seeds a card must list per scale: the quick scale promises at least 5 (enough pairs for a t interval that can
# exclude 0 on a modest effect); a paper-scale run may be as costly as the paper's own few seeds.
MIN_SEEDS = {"quick": 5, "paper": 2}
CARD_KEYS = {"paper", "claim", "metric", "baseline", "treatment", "paper_result", "scales", "steps"}
REQUIRED_CARD_KEYS = CARD_KEYS - {"steps"}
ARM_KEYS = {"name", "overrides"}
SCALE_KEYS = {"seeds", "overrides", "arm_overrides"}
PROCEDURE_SCALE_KEYS = {"seeds", "overrides", "step_args"}
PAPER_RESULT_KEYS = {"source", "baseline", "treatment", "note"}


@dataclass(frozen=True)
class Scale:
    name: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]  # for both arms (a procedure card: for every train and score step)
    arm_overrides: dict[str, tuple[str, ...]]  # arm -> extra overrides at this scale only
    step_args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # step -> extra args at this scale only


@dataclass(frozen=True)
class PaperResult:
    """The paper's own numbers, in the units of the card's metric (a fraction for accuracies)."""

    source: str  # table or figure, dataset and setting
    baseline: float | None
    treatment: float | None
    note: str | None


@dataclass(frozen=True)
class Card:
    name: str
    path: Path
    paper: str
    claim: str  # the measurable direction, e.g. "test accuracy under 40% symmetric noise: ELR > CE"
    metric: str  # a metrics.json metric; "better" follows its direction (lower for *nll*, *ece*, *loss*)
    arm_names: dict[str, str]  # arm -> display name
    arm_overrides: dict[str, tuple[str, ...]]  # arm -> overrides at every scale
    paper_result: PaperResult
    scales: dict[str, Scale]
    steps: tuple[Step, ...] = ()  # a procedure card's steps, run in order for each seed
    step_arms: dict[str, StepArm] = field(default_factory=dict)  # a procedure card's arm -> where its value is

    @property
    def is_procedure(self) -> bool:
        return bool(self.steps)

    def overrides_of(self, arm: str, scale: str) -> tuple[str, ...]:
        """Everything that sets this arm apart at this scale, card-wide overrides first."""
        return self.arm_overrides[arm] + self.scales[scale].arm_overrides.get(arm, ())


def conf_root() -> Path:
    return Path(str(resources.files("regbench.conf")))


def cards_dir() -> Path:
    return conf_root() / "claim"


def card_names() -> list[str]:
    return sorted(path.stem for path in cards_dir().glob("*.yaml"))


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise UserError(f"--scale {scale!r} is invalid: allowed: {', '.join(SCALES)}")


def resolve_card_path(name: str) -> Path:
    """A shipped card by name, or a card file given by its path (ends in .yaml)."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"claim card file {name!r} does not exist")
        return path
    names = card_names()
    if name not in names:
        raise UserError(f"claim card {name!r} is not known; allowed: {', '.join(names)} (or a path to a card .yaml)")
    return cards_dir() / f"{name}.yaml"


def load_card(name: str) -> Card:
    path = resolve_card_path(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"claim card {path} cannot be read: {str(err).splitlines()[0]}") from None
    return parse_card(raw, path)


def parse_card(raw: Any, path: Path) -> Card:
    check = _Checker(path)
    check.mapping("", raw, CARD_KEYS, REQUIRED_CARD_KEYS)
    for key in ("paper", "claim", "metric"):
        check.text(key, raw[key])
    steps = _parse_steps(check, raw["steps"]) if "steps" in raw else ()
    arm_names, arm_overrides, step_arms = {}, {}, {}
    for arm in ARMS:
        check.mapping(arm, raw[arm], STEP_ARM_KEYS if steps else ARM_KEYS, STEP_ARM_KEYS if steps else ARM_KEYS)
        check.text(f"{arm}.name", raw[arm]["name"])
        arm_names[arm] = raw[arm]["name"]
        if steps:
            step_arms[arm] = _parse_step_arm(check, arm, raw[arm], steps)
            arm_overrides[arm] = ()
        else:
            arm_overrides[arm] = check.overrides(f"{arm}.overrides", raw[arm]["overrides"])
    check.mapping("scales", raw["scales"], set(SCALES), set(SCALES))
    scales = {name: _parse_scale(check, name, raw["scales"][name], steps) for name in SCALES}
    return Card(path.stem, path, raw["paper"], raw["claim"], raw["metric"], arm_names, arm_overrides,
                _parse_paper_result(check, raw.get("paper_result")), scales, steps, step_arms)


def _parse_steps(check: "_Checker", raw: Any) -> tuple[Step, ...]:
    check.that(isinstance(raw, list) and len(raw) > 0, "steps", raw, "must be a non-empty list of steps")
    steps: list[Step] = []
    for number, item in enumerate(raw):
        key = f"steps[{number}]"
        check.mapping(key, item, STEP_KEYS, STEP_KEYS)
        name, command, args = item["name"], item["command"], item["args"]
        earlier = [step.name for step in steps]
        check.that(isinstance(name, str) and STEP_NAME.fullmatch(name) is not None
                   and name not in (SEED_FIELD, DIR_FIELD), f"{key}.name", name,
                   f"must be a lowercase identifier other than {SEED_FIELD} and {DIR_FIELD}")
        check.that(name not in earlier, f"{key}.name", name, "must differ from the other steps' names")
        check.that(command in STEP_COMMANDS, f"{key}.command", command, f"allowed: {', '.join(STEP_COMMANDS)}")
        args = check.step_args(f"{key}.args", args, command, earlier)
        steps.append(Step(name, command, args))
    return tuple(steps)


def _parse_step_arm(check: "_Checker", arm: str, raw: dict[str, Any], steps: tuple[Step, ...]) -> StepArm:
    names = [step.name for step in steps]
    check.that(raw["step"] in names, f"{arm}.step", raw["step"], f"must name a step: {', '.join(names)}")
    check.text(f"{arm}.file", raw["file"])
    check.that(set(placeholders(raw["file"])) <= {SEED_FIELD}, f"{arm}.file", raw["file"],
               "a JSON file in the step's directory; the only placeholder allowed is {seed}")
    check.text(f"{arm}.key", raw["key"])
    return StepArm(raw["step"], raw["file"], raw["key"])


def _parse_scale(check: "_Checker", name: str, raw: Any, steps: tuple[Step, ...] = ()) -> Scale:
    key = f"scales.{name}"
    check.mapping(key, raw, PROCEDURE_SCALE_KEYS if steps else SCALE_KEYS, {"seeds", "overrides"})
    seeds = raw["seeds"]
    minimum = MIN_SEEDS[name]
    ok = (isinstance(seeds, list) and len(set(map(str, seeds))) == len(seeds) >= minimum
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds))
    check.that(ok, f"{key}.seeds", seeds, f"must list at least {minimum} distinct integer seeds >= 0")
    extra = raw.get("arm_overrides") or {}
    check.mapping(f"{key}.arm_overrides", extra, set(ARMS), set())
    arm_overrides = {arm: check.overrides(f"{key}.arm_overrides.{arm}", extra[arm]) for arm in extra}
    by_step = {step.name: step for step in steps}
    step_extra = raw.get("step_args") or {}
    check.mapping(f"{key}.step_args", step_extra, set(by_step), set())
    step_args = {step: check.step_args(f"{key}.step_args.{step}", step_extra[step], by_step[step].command,
                                       [s.name for s in steps[:steps.index(by_step[step])]])
                 for step in step_extra}
    return Scale(name, tuple(seeds), check.overrides(f"{key}.overrides", raw["overrides"]), arm_overrides, step_args)


def _parse_paper_result(check: "_Checker", raw: Any) -> PaperResult:
    check.mapping("paper_result", raw, PAPER_RESULT_KEYS, {"source"})
    check.text("paper_result.source", raw["source"])
    for arm in ARMS:
        value = raw.get(arm)
        check.that(value is None or _is_number(value) and math.isfinite(value), f"paper_result.{arm}", value,
                   "must be a number in the metric's units, or left out")
    note = raw.get("note")
    check.that(note is None or isinstance(note, str), "paper_result.note", note, "must be text")
    return PaperResult(raw["source"], raw.get("baseline"), raw.get("treatment"), note)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """One-line errors that name the card file, the key, the bad value and what is allowed."""

    def __init__(self, path: Path):
        self.path = path

    def that(self, ok: bool, key: str, value: Any, allowed: str) -> None:
        if not ok:
            raise UserError(f"claim card {self.path}: {key}={value!r} is invalid: {allowed}")

    def mapping(self, key: str, value: Any, allowed: set[str], required: set[str]) -> None:
        """`key` "" is the card itself."""
        self.that(isinstance(value, dict), key or "card", value, "must be a mapping")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise UserError(f"claim card {self.path}: {key + '.' if key else ''}{unknown[0]} is not a card key; "
                            f"allowed: {', '.join(sorted(allowed))}")
        missing = sorted(required - set(value))
        if missing:
            raise UserError(f"claim card {self.path}: {key or 'the card'} lacks {', '.join(missing)}")

    def text(self, key: str, value: Any) -> None:
        self.that(isinstance(value, str) and value.strip() != "", key, value, "must be non-empty text")

    def step_args(self, key: str, value: Any, command: str, earlier: list[str]) -> tuple[str, ...]:
        """A step's arguments: text, placeholders naming the seed, the step's directory or an earlier step, and
        nothing that sets the step's output place (reproduce does)."""
        self.that(isinstance(value, list) and all(isinstance(item, str) for item in value), key, value,
                  "must be a list of command-line arguments")
        allowed = [SEED_FIELD, DIR_FIELD, *earlier]
        for item in value:
            unknown = [name for name in placeholders(item) if name not in allowed]
            self.that(not unknown, key, item, f"{{{unknown[0] if unknown else ''}}} is not a placeholder here; "
                                              f"allowed: {', '.join('{' + name + '}' for name in allowed)}")
            self.that(not owned_argument(command, item), key, item,
                      f"regbench reproduce sets the output place of a {command} step itself")
        return tuple(value)

    def overrides(self, key: str, value: Any) -> tuple[str, ...]:
        ok = isinstance(value, list) and all(isinstance(item, str) and "=" in item for item in value)
        self.that(ok, key, value, "must be a list of Hydra overrides KEY=VALUE")
        return tuple(value)
