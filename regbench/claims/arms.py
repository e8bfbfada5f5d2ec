"""A card's two arms as Hydra configs, so one ordinary sweep runs both: `+arm=baseline,treatment`.

Hydra sweeps are products of independent keys, while the arms of a claim may differ in several settings at once
(ELR at its own `lam`, co-teaching with its forget rate set to the noise rate). Each arm's overrides are written
as a `# @package _global_` config in a folder on `hydra.searchpath`: group choices become `override /group`
entries of its defaults list, values become its body, exactly what the same overrides do on the command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from regbench.rundir_format import write_text_atomic
from regbench.claims.card import conf_root
from regbench.errors import UserError, one_line

# The sweep key that selects an arm, and the config group folder the arm files live in.
ARM_KEY = "arm"
HEADER = "# @package _global_\n# Written by `regbench reproduce` from claim card {card}; the card is the source.\n"


def conf_groups() -> set[str]:
    """regbench's config groups (data, norm, regularizer, exp, ...): the folders of conf/ that hold options.
    conf/claim/ holds the cards, which are read by regbench reproduce, never composed."""
    return {path.name for path in conf_root().iterdir()
            if path.is_dir() and path.name != "claim" and any(path.glob("*.yaml"))}


def arm_config(overrides: tuple[str, ...], conf_groups: set[str], where: str) -> dict[str, Any]:
    """The config that applies `overrides` when added to the defaults list; `where` names them in errors."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise UserError(f"{where}: cannot parse the overrides: {one_line(err)}") from None
    defaults: list[Any] = []
    body: dict[str, Any] = {}
    for override in parsed:
        _check_plain(override, where)
        key = override.key_or_group
        if key in conf_groups:
            # `+group=x` adds a group the root config does not select (e.g. exp); `group=x` replaces a choice.
            entry = f"/{key}" if override.is_add() else f"override /{key}"
            defaults.append({entry: override.value()})
        else:
            _assign(body, key.split("."), override.value())
    return {"defaults": [*defaults, "_self_"], **body}


def write_arms(folder: Path, card: str, arms: dict[str, tuple[str, ...]], conf_groups: set[str]) -> Path:
    """Write one config per arm under `folder`/arm/; returns the folder to put on `hydra.searchpath`."""
    group = folder / ARM_KEY
    group.mkdir(parents=True, exist_ok=True)
    for arm, overrides in arms.items():
        config = arm_config(overrides, conf_groups, f"claim card {card}, {arm}")
        text = HEADER.format(card=card) + yaml.safe_dump(config, sort_keys=False)
        write_text_atomic(group / f"{arm}.yaml", text)
    return folder


def _check_plain(override: Override, where: str) -> None:
    if override.is_delete() or override.is_sweep_override() or "/" in override.key_or_group:
        raise UserError(f"{where}: {override.input_line!r} is not allowed in an arm: give KEY=VALUE or GROUP=OPTION "
                        f"(no sweeps, deletions or hydra/ groups)")


def _assign(body: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        body = body.setdefault(part, {})
    body[path[-1]] = value
