"""The planned checks and those that need the model code run once per config and process: the preflight's check
serves the job that the same process then runs, while a refused config is refused every time and another config is
checked anew."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict

from regbench.config import buildable, planned
from regbench.config.validate import validate_config
from regbench.errors import UserError


def run_config(*overrides: str, run_dir: str = "run") -> dict:
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    with open_dict(cfg):
        cfg.run_dir = run_dir
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture
def checks(monkeypatch) -> list[bool]:
    """The on_this_machine flag of every check actually made, in a process that has checked nothing yet."""
    made, check = [], buildable.build_checks
    monkeypatch.setattr(buildable, "_BUILDABLE", set())
    monkeypatch.setattr(buildable, "build_checks",
                        lambda cfg, shape, here: made.append(here) or check(cfg, shape, here))
    return made


def test_a_config_is_checked_once_per_process(checks):
    inactive = validate_config(run_config("regularizer=[dropout]", "regularizer.dropout.rate=0", run_dir="."))
    assert [c["component"] for c in inactive] == ["regularizer=dropout"]  # the result is kept, not only the pass
    inactive[0]["reason"] = "changed by the caller"
    again = validate_config(run_config("regularizer=[dropout]", "regularizer.dropout.rate=0", run_dir="outputs/x"))
    assert checks == [True] and again[0]["reason"] != "changed by the caller"
    validate_config(run_config("regularizer=[dropout]", "regularizer.dropout.rate=0"), on_this_machine=False)
    validate_config(run_config("regularizer=[dropout]", "regularizer.dropout.rate=0", "seed=1"))
    assert checks == [True, False, True]  # a check elsewhere serves no run here; another config is checked anew


def test_a_refused_config_is_refused_every_time(checks):
    not_sgd = run_config("regularizer=[weight_compander]", "optim=adamw")  # refused by the built regularizer
    for _ in range(2):
        with pytest.raises(UserError, match="regularizer=weight_compander needs optim=sgd"):
            validate_config(not_sgd)
    assert checks == [True, True]


def test_the_planned_stage_runs_once_per_config_and_process(monkeypatch):
    made, check = [], planned.planned_checks
    monkeypatch.setattr(planned, "_PLANNED", {})
    monkeypatch.setattr(planned, "planned_checks", lambda cfg, here: made.append(here) or check(cfg, here))
    shape = planned.check_planned_run(run_config("seed=3"))
    assert planned.check_planned_run(run_config("seed=3", run_dir="elsewhere")) is shape  # run_dir is not hashed
    planned.check_planned_run(run_config("seed=3"), on_this_machine=False)
    assert made == [True, False]
    too_large = run_config("data.batch_size=5000")  # digits has 1295 training images
    for _ in range(2):
        with pytest.raises(UserError, match="data.batch_size=5000"):
            planned.check_planned_run(too_large)
    assert made == [True, False, True, True]
