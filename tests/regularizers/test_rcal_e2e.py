"""RCAL through the real CLI on noisy long-tailed digits: both phases run and the LOF report is in metrics.json, the
preset trains, and bad values and stacks are refused in one line before a run directory exists."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
# One epoch per phase (the default 0.2 of trainer.max_epochs would leave the contrastive phase none of two epochs).
TINY = ["backbone.widths=[8]", "logger=none", "trainer.max_epochs=2"]
PHASES = ["regularizer.rcal.representation_epochs=1"]
NOISY_LONG_TAIL = ["data.noise.type=symmetric", "data.noise.rate=0.2", "data.imbalance.type=exponential",
                   "data.imbalance.factor=10"]


def test_a_noisy_long_tailed_run_trains_both_phases(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[rcal]", *NOISY_LONG_TAIL, *PHASES, *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    report = payload["rcal"]
    # Digits' exponential profile (rho 10) leaves the last classes below half the largest one's labels.
    assert report["tail_classes"] and 0 not in report["tail_classes"]
    assert report["trimmed"] >= 0 and 0.1 < report["train_noisy_fraction"] < 0.3
    assert 0.0 <= payload["metrics"]["test_acc"] <= 1.0


def test_the_preset_trains_on_noisy_long_tailed_labels(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=rcal", *PHASES, *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed" and payload["exp_name"] == "rcal"
    assert "imbalance" in payload and payload["rcal"]["train_noisy_fraction"] > 0


@pytest.mark.parametrize("override,message", [
    ("regularizer=[rcal,elr]", "rcal and elr both do noisy-label loss"),
    ("regularizer=[rcal,dropout]", "rcal and dropout both do penultimate-feature dropout"),
    ("regularizer=[rcal,mixup]", "regularizer=rcal cannot be stacked with mixup"),
    ("regularizer=[rcal,sade]", "regularizer=rcal cannot be stacked with sade"),
    ("regularizer=[rcal,ema]", "regularizer=rcal cannot be stacked with ema"),
    ("regularizer=[rcal,weight_compander]", "regularizer=rcal cannot be stacked with weight_compander"),
    ("data.balance.type=upsample", "regularizer=rcal cannot be stacked with data.balance.type=upsample"),
    ("regularizer.rcal.representation_epochs=2", "regularizer.rcal.representation_epochs=2 is invalid: must leave"),
    ("regularizer.rcal.representation_epochs=0", "regularizer.rcal.representation_epochs=0 is invalid"),
    ("regularizer.rcal.representation_epochs=0.2", "regularizer.rcal.representation_epochs=0.2 is invalid: must leave "
     "at least one epoch to each phase: 0 of trainer.max_epochs=2"),
    ("regularizer.rcal.temperature=0", "regularizer.rcal.temperature=0 is invalid: must be a number > 0"),
    ("regularizer.rcal.tail_count_fraction=1.5", "regularizer.rcal.tail_count_fraction=1.5 is invalid"),
    ("regularizer.rcal.view_crop_padding=8", "regularizer.rcal.view_crop_padding=8 is invalid: reflect padding"),
    ("regularizer.rcal.lof_neighbors=0", "regularizer.rcal.lof_neighbors=0 is invalid"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, override, message):
    extra = [] if override.startswith("regularizer=") else ["regularizer=[rcal]"]
    # Two phases fit the tiny run, so each case refuses only its own setting (the run checks come first).
    phases = [] if "representation_epochs" in override else PHASES
    done = run_regbench("train", *extra, *phases, override, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
