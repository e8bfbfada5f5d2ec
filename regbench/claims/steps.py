"""A procedure card's steps and the arms that read their results, checked without torch or Hydra.

A procedure card (a card with `steps:`) runs, for each seed, its steps in order as regbench commands (`train`,
`score`, `soup`, `probe`), each in its own directory `<sweep dir>/seed_<s>/<step>/`; each arm then reads one
number per seed from a JSON file a step wrote. Step arguments may hold placeholders: `{seed}` (the card's seed),
`{dir}` (this step's directory) and `{NAME}` (the directory of the earlier step NAME, same seed). Hydra's own
`${...}` interpolations are left alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# The option by which `regbench reproduce` gives each command the place of its output (score: its DIR argument,
# given first), so a card may not set it.
STEP_COMMANDS = {"train": "hydra.sweep.dir", "score": None, "soup": "--out", "probe": "--out"}
# The commands whose arguments are Hydra overrides, which get the scale's and the user's overrides.
OVERRIDABLE_COMMANDS = ("train", "score")
STEP_KEYS = {"name", "command", "args"}
STEP_ARM_KEYS = {"name", "step", "file", "key"}
SEED_FIELD = "seed"
DIR_FIELD = "dir"
# `{name}` not preceded by `$` (a Hydra interpolation such as `${seed}` is the run's business).
PLACEHOLDER = re.compile(r"(?<!\$)\{([^{}]*)\}")
STEP_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Step:
    name: str
    command: str  # a key of STEP_COMMANDS
    args: tuple[str, ...]  # with placeholders


@dataclass(frozen=True)
class StepArm:
    """Where an arm's value for a seed is: `key` (dotted; list items by index) of the JSON `file` (relative to the
    step's directory, `{seed}` allowed) that step `step` wrote."""

    step: str
    file: str
    key: str

    def describe(self) -> str:
        return f"{self.key} of {self.step}/{self.file}"


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def substitute(text: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def owned_argument(command: str, arg: str) -> bool:
    """Whether `arg` sets what reproduce gives the command itself (its output's place)."""
    owned = STEP_COMMANDS[command]
    if command == "train":
        return arg.lstrip("+~").split("=", 1)[0] == owned or arg in ("-m", "--multirun")
    return owned is not None and arg.split("=", 1)[0] == owned


def dig(document: object, key: str) -> object:
    """The value at dotted `key` (an integer part indexes a list, negative from its end); KeyError if absent."""
    value = document
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", part) and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value
