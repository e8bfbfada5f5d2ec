"""Value rules of component parameters, torch-free so that the config checks refuse a bad value before the model
code loads. A rule takes (key, value) and raises a ParamError naming both and what is allowed; a registry entry
declares its parameters' rules (regbench.registry.Entry.values), and building the entry applies them too."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from regbench.errors import check

Rule = Callable[[str, Any], None]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_list(value: Any) -> bool:
    """A list from YAML or the command line (omegaconf's ListConfig too), a tuple from code."""
    return isinstance(value, Sequence) and not isinstance(value, str)


def below_one(key: str, value: Any) -> None:
    """Rates, decays and momenta in [0, 1): 1 would drop, keep or carry everything."""
    check(is_number(value) and 0.0 <= value < 1.0, key, value, "must be in [0, 1)")


def unit_interval(key: str, value: Any) -> None:
    check(is_number(value) and 0.0 <= value <= 1.0, key, value, "must be in [0, 1]")


def running_momentum(key: str, value: Any) -> None:
    check(is_number(value) and 0.0 < value <= 1.0, key, value,
          "must be in (0, 1] (0 never updates the running statistics that evaluation normalizes with)")


def smoothing(key: str, value: Any) -> None:
    check(is_number(value) and 0.0 <= value < 1.0, key, value,
          "must be in [0, 1) (1 would make every target uniform, leaving nothing to learn)")


def boolean(key: str, value: Any) -> None:
    check(isinstance(value, bool), key, value, "must be true or false")


def at_least(minimum: int, meaning: str = "") -> Rule:
    """An integer of at least `minimum`; `meaning` says what it counts, in the error."""
    def rule(key: str, value: Any) -> None:
        check(is_int(value) and value >= minimum, key, value,
              f"must be an integer >= {minimum}" + (f" ({meaning})" if meaning else ""))
    return rule


def betas(key: str, value: Any) -> None:
    ok = is_list(value) and len(value) == 2 and all(is_number(b) and 0 <= b < 1 for b in value)
    check(ok, key, list(value) if is_list(value) else value, "must be two numbers in [0, 1)")


def widths(key: str, value: Any) -> None:
    ok = is_list(value) and len(value) > 0 and all(is_int(w) and w > 0 for w in value)
    check(ok, key, list(value) if is_list(value) else value,
          "must be a non-empty list of positive integers")


def allowed_names(names: Sequence[str]) -> Rule:
    """A name from `names`, said as "allowed: ..." (the wording some parameters' errors have always had)."""
    def rule(key: str, value: Any) -> None:
        check(value in names, key, value, f"allowed: {', '.join(names)}")
    return rule


def one_of(allowed: Sequence[str]) -> Rule:
    """A name from `allowed`."""
    def rule(key: str, value: Any) -> None:
        check(value in allowed, key, value, f"must be one of {', '.join(allowed)}")
    return rule
