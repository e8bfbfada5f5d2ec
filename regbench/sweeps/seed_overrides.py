"""The command line of a command that drives one config over seeds (`reproduce`, `score`): `seed=...` picks the seeds,
every other override goes to each run, and what the command sets itself or a swept setting is refused in one line."""
from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from regbench.errors import UserError, one_line


def override_key(override: Override) -> str:
    return override.key_or_group.lstrip("+~")


def split_seed_overrides(overrides: list[str], default_seeds: tuple[int, ...], *, command: str,
                         owned_keys: tuple[str, ...], owned_note: str, one_config: str, min_seeds: int,
                         example: str) -> tuple[tuple[int, ...], list[Override]]:
    """The seeds to run (the user's `seed=...` replaces `default_seeds`) and the other overrides, parsed. Refused:
    a key in `owned_keys` (`command` sets it; `owned_note` says how), a swept setting (`one_config` says why only
    seed may take a list), fewer than `min_seeds` distinct integer seeds >= 0 (`example` shows a good list)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse the overrides: {one_line(err)}") from None
    seeds, others = default_seeds, []
    for override in parsed:
        key = override_key(override)
        if key == "seed":
            seeds = tuple(override.sweep_iterator()) if override.is_sweep_override() else (override.value(),)
            continue
        if key in owned_keys:
            raise UserError(f"{override.input_line!r} cannot be overridden: {command} sets it ({owned_note})")
        if override.is_sweep_override():
            raise UserError(f"{override.input_line!r} sweeps a setting: {one_config}, so only seed may take a list")
        others.append(override)
    if not (len(seeds) >= min_seeds and len(set(seeds)) == len(seeds)
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        at_least = f"at least {min_seeds} " if min_seeds > 1 else ""
        raise UserError(f"seed={','.join(map(str, seeds))} is invalid: give {at_least}distinct integer seeds >= 0, "
                        f"e.g. {example}")
    return seeds, others
