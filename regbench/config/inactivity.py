"""Every component of a run checked against the run's shape (regbench.specs.run_checks), torch-free: a setting that
would make a technique harmful is refused in one line; one that leaves it inactive is warned about and listed in
metrics.json's `inactive`, so a job never reports the baseline under a technique's name unnoticed."""
from __future__ import annotations

import sys
from functools import partial
from typing import Any, Callable, Mapping, Sequence

from regbench.errors import ParamError, UserError
from regbench.runshape import Inactive, RunShape
from regbench.specs.norms import NORMS
from regbench.specs.optim import SCHEDULES
from regbench.specs.placement import split_norm_config
from regbench.specs.run_checks import NORM_RUN_CHECKS, SCHEDULE_RUN_CHECKS, regularizer_run_check

ShapeCheck = Callable[[RunShape], list[Inactive]]


def component_checks(cfg: Mapping[str, Any]) -> list[tuple[str, str, ShapeCheck]]:
    """(component, config path of its parameters, its check) for every component of the run that has one."""
    checks: list[tuple[str, str, ShapeCheck]] = [
        (f"regularizer={name}", f"regularizer.{name}", partial(regularizer_run_check, name, params, run=cfg))
        for name, params in cfg["regularizer"].items()]
    norm, norm_params, _ = split_norm_config(cfg["norm"])
    if norm in NORM_RUN_CHECKS:
        checks.append((f"norm={norm}", "norm", partial(NORM_RUN_CHECKS[norm], NORMS.with_defaults(norm, norm_params))))
    sched = cfg["sched"]["name"]
    sched_params = SCHEDULES.with_defaults(sched, {k: v for k, v in cfg["sched"].items() if k != "name"})
    checks.append((f"sched={sched}", "sched", partial(SCHEDULE_RUN_CHECKS[sched], sched_params)))
    return checks


def inactive_components(cfg: Mapping[str, Any], shape: RunShape) -> list[dict[str, str]]:
    """metrics.json's `inactive` entries; a harmful setting raises a UserError naming its full config key."""
    found = []
    for component, path, check in component_checks(cfg):
        try:
            reasons = check(shape)
        except ParamError as err:
            raise UserError(str(err.at(path))) from None
        found += [{"component": component, "reason": reason.at(path)} for reason in reasons]
    return found


def warn_inactive(inactive: Sequence[Mapping[str, str]], where: str = "") -> None:
    """One warning line per inactive component, on stderr; `where` names the sweep job."""
    for entry in inactive:
        print(f"regbench train: warning: {where}{entry['component']} is inactive: {entry['reason']}",
              file=sys.stderr, flush=True)
