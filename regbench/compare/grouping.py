"""Which settings tell the runs apart, grouping runs by them, and finding each group's baseline."""

from __future__ import annotations

import json
from dataclasses import dataclass

from regbench.compare.runs import RunRecord
from regbench.errors import UserError

COMPONENT_ORDER = ("data", "backbone", "norm", "regularizer", "optim", "sched")
MISSING = None  # the value of a setting a run does not have (e.g. cutmix.alpha of a run without cutmix)


@dataclass(frozen=True)
class Group:
    values: tuple  # one value per grouping key
    runs: tuple[RunRecord, ...]

    def label(self, keys: list[str]) -> str:
        if not keys:
            return "all runs"
        return ", ".join(f"{key}={format_value(value)}" for key, value in zip(keys, self.values))


def format_value(value) -> str:
    if value is MISSING:
        return "-"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_of(record: RunRecord) -> dict[str, object]:
    """The components plus the flattened config, minus what differs between runs of the same setup."""
    settings = {name: value for name, value in _flatten(record.config).items() if not _is_bookkeeping(name)}
    settings.update(record.components)
    return settings


def available_keys(records: list[RunRecord]) -> list[str]:
    return sorted({key for record in records for key in settings_of(record)})


def detect_grouping_keys(records: list[RunRecord]) -> list[str]:
    """The settings that vary, components first, leaving out any that do not split the runs further.

    A setting varies when the runs that have it disagree on its value; being absent is not variation, as
    e.g. `regularizer.cutmix.alpha` exists only in cutmix runs. A varying setting that follows from those
    already chosen (`norm.name` from `norm`, `exp_name` from `regularizer`) would only lengthen the labels.
    Seeds (`data.noise.seed`, `data.split_seed`, ... which default to the run's seed) mark replicates, not
    settings, so they never group automatically; `--by` can still name them.
    """
    all_settings = [settings_of(record) for record in records]
    keys: list[str] = []
    for candidate in _by_preference(available_keys(records)):
        if _is_seed(candidate):
            continue
        present = {s[candidate] for s in all_settings if candidate in s}
        if len(present) < 2:
            continue
        before = {tuple(_value(s, key) for key in keys) for s in all_settings}
        after = {tuple(_value(s, key) for key in keys + [candidate]) for s in all_settings}
        if len(after) > len(before):
            keys.append(candidate)
    return keys


def check_keys(keys: list[str], records: list[RunRecord]) -> None:
    available = available_keys(records)
    for key in keys:
        if key not in available:
            raise UserError(f"--by key {key!r} is not a setting of the runs; available: {', '.join(available)}")


def group_runs(records: list[RunRecord], keys: list[str]) -> list[Group]:
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        settings = settings_of(record)
        groups.setdefault(tuple(_value(settings, key) for key in keys), []).append(record)
    return [Group(values, tuple(runs)) for values, runs in groups.items()]


def parse_baseline(spec: str) -> dict[str, str]:
    """`regularizer=none,norm=batchnorm` -> {"regularizer": "none", "norm": "batchnorm"}."""
    parsed = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--baseline {spec!r} is invalid: expected KEY=VALUE[,KEY=VALUE...]")
        parsed[key.strip()] = value.strip()
    return parsed


def default_baseline(groups: list[Group], keys: list[str]) -> dict[str, str] | None:
    """The unregularized groups when the regularizer is a grouping key and some group has none."""
    if "regularizer" in keys:
        position = keys.index("regularizer")
        if any(group.values[position] == "none" for group in groups):
            return {"regularizer": "none"}
    return None


def find_baselines(groups: list[Group], keys: list[str], spec: dict[str, str]) -> dict[tuple, Group | None]:
    """Map each group to its baseline: the group matching `spec` that agrees with it on every other key.

    With `--by regularizer,norm --baseline regularizer=none`, cutmix+groupnorm is compared to
    none+groupnorm, not to none+batchnorm; a group with no such counterpart gets None.
    """
    for key in spec:
        if key not in keys:
            grouping_keys = ", ".join(keys) or "(none)"
            raise UserError(f"--baseline key {key!r} is not a grouping key; grouping keys: {grouping_keys}")
    spec_positions = [keys.index(key) for key in spec]
    matching = [g for g in groups if all(_matches(g.values[keys.index(k)], v) for k, v in spec.items())]
    if not matching:
        labels = "; ".join(group.label(keys) for group in groups)
        raise UserError(f"--baseline {_spec_text(spec)!r} matches no group; groups: {labels}")

    def rest(group: Group) -> tuple:
        return tuple(value for position, value in enumerate(group.values) if position not in spec_positions)

    baseline_by_rest = {rest(group): group for group in matching}
    return {group.values: baseline_by_rest.get(rest(group)) for group in groups}


def _matches(value, text: str) -> bool:
    return text in (format_value(value), str(value))  # so both 1 and 1.0 name the float 1.0


def _spec_text(spec: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in spec.items())


def _by_preference(keys: list[str]) -> list[str]:
    """Components in pipeline order, then config keys alphabetically, and the free-text exp_name last."""
    def rank(key: str) -> tuple:
        if key in COMPONENT_ORDER:
            return (0, COMPONENT_ORDER.index(key), key)
        return (2 if key == "exp_name" else 1, 0, key)
    return sorted(keys, key=rank)


def _is_bookkeeping(key: str) -> bool:
    """Settings that differ between runs of one setup: seed, output locations, logging, the data folder."""
    top, last = key.split(".")[0], key.rsplit(".", 1)[-1]
    return (
        top in ("seed", "run_dir")
        or top.startswith(("hydra", "logger"))
        or last.endswith(("_dir", "_path", "root"))
    )


def _is_seed(key: str) -> bool:
    """`data.noise.seed`, `data.split_seed`, `regularizer.x.seed`: a random replicate, not a treatment."""
    last = key.rsplit(".", 1)[-1]
    return last == "seed" or last.endswith("_seed")


def _flatten(config: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[key] = _freeze(value)
    return flat


def _freeze(value):
    """Make a config value hashable so runs can be grouped by it."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _value(settings: dict, key: str):
    return settings.get(key, MISSING)
