"""SADE through the real CLI on long-tailed digits: a run with its test-agnostic report in metrics.json, the
preset, and bad values and stacks refused in one line before a run directory exists."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none", "trainer.max_epochs=1"]


def test_a_long_tailed_run_reports_each_test_distribution(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[sade]", "data.imbalance.type=exponential", "data.imbalance.factor=10",
                        "regularizer.sade.aggregation_epochs=2", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    assert payload["sade_test_imbalance_factor"] == 10.0  # the training set's, through the YAML interpolation
    sections = payload["sade_test_agnostic"]
    assert list(sections) == ["all", "forward", "uniform", "backward"]
    # The plain prediction is the mean of the experts: the whole test split's accuracy is the run's test_acc.
    assert sections["all"]["acc_average"] == pytest.approx(payload["metrics"]["test_acc"], abs=1e-6)
    assert sections["all"]["images"] > sections["uniform"]["images"] > sections["forward"]["images"]
    assert sections["forward"]["images"] == sections["backward"]["images"]
    for section in sections.values():
        assert sum(section["weights"].values()) == pytest.approx(1.0)
        assert 0.0 <= section["acc_aggregated"] <= 1.0


def test_the_preset_trains_on_a_long_tailed_set(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=sade", "regularizer.sade.aggregation_epochs=1", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed" and payload["exp_name"] == "sade"
    assert payload["sade_test_imbalance_factor"] == 10.0 and "imbalance" in payload


@pytest.mark.parametrize("override,message", [
    ("regularizer=[sade,coteaching]", "regularizer=sade cannot be stacked with coteaching"),
    ("regularizer=[multisample_dropout,sade]", "regularizer=sade cannot be stacked with multisample_dropout"),
    ("regularizer=[sade,nested_dropout]", "regularizer=sade cannot be stacked with nested_dropout"),
    ("data.balance.type=upweight", "regularizer=sade cannot be stacked with data.balance.type=upweight"),
    ("regularizer.sade.inverse_lambda=-1", "regularizer.sade.inverse_lambda=-1 is invalid: must be a number >= 0"),
    ("regularizer.sade.view_crop_padding=8", "regularizer.sade.view_crop_padding=8 is invalid: reflect padding"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, override, message):
    extra = [] if override.startswith("regularizer=") else ["regularizer=[sade]"]
    done = run_regbench("train", *extra, override, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
