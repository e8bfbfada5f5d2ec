"""STORM through the real CLI on digits with 40% symmetric label noise: a run with its weight report in metrics.json,
the preset, and bad values and stacks refused in one line before a run directory exists."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none", "trainer.max_epochs=1"]


def test_a_noisy_run_reports_the_weights_of_clean_and_corrupted_samples(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[storm]", "data.noise.type=symmetric", "data.noise.rate=0.4", *TINY,
                        "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    weights = payload["storm_weights"]
    assert set(weights) == {"mean_clean", "below_half_clean", "mean_noisy", "below_half_noisy"}
    assert all(0.0 < weights[key] < 1.0 for key in ("mean_clean", "mean_noisy"))
    assert all(0.0 <= weights[key] <= 1.0 for key in ("below_half_clean", "below_half_noisy"))


def test_the_preset_trains_on_noisy_labels(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=storm", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed" and payload["exp_name"] == "storm"
    assert "mean_noisy" in payload["storm_weights"]


@pytest.mark.parametrize("override,message", [
    ("regularizer=[storm,mixup]", "regularizer=storm cannot be stacked with mixup"),
    ("regularizer=[storm,coteaching]", "storm and coteaching both do noisy-label loss"),
    ("regularizer.storm.meta_lr=0", "regularizer.storm.meta_lr=0 is invalid: must be a number > 0"),
    ("regularizer.storm.dropout_rounds=-1", "regularizer.storm.dropout_rounds=-1 is invalid"),
    ("trainer.compile=true", "regularizer=storm cannot run with trainer.compile=true"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, override, message):
    extra = [] if override.startswith("regularizer=") else ["regularizer=[storm]"]
    done = run_regbench("train", *extra, override, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
