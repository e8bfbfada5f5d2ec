"""The grokking study through the real CLI: `+exp=grokking` on a small modulus trains and writes the IPR and the
pruning curves to metrics.json, with the corrupted-train accuracy; bad settings exit 2 in one line before a run
directory exists."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
TINY = ["data.modulus=11", "backbone.width=16", "data.batch_size=16", "trainer.max_epochs=1", "logger=none"]


def test_the_preset_trains_and_reports_ipr_and_pruning(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=grokking", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    assert payload["components"] == {"data": "modular", "backbone": "quadratic_mlp", "norm": "none",
                                     "regularizer": "ipr_pruning", "optim": "adamw", "sched": "constant"}
    assert payload["noise"]["type"] == "symmetric" and payload["noise"]["rate"] == 0.35
    ipr = payload["ipr"]
    assert 1 / 6 - 1e-9 <= ipr["mean"] <= 1 and sum(ipr["histogram"]["counts"]) == 16
    for order in ("lowest_first", "highest_first"):
        rows = payload["ipr_pruning"][order]
        assert [row["pruned"] for row in rows] == [0, 2, 3, 5, 6, 8, 10, 11]  # round(fraction * 16)
        assert rows[0]["test_acc"] == pytest.approx(payload["metrics"]["test_acc"], abs=1e-6)
        assert all(row["train_corrupted_acc"] is not None and 0 <= row["train_clean_acc"] <= 1 for row in rows)


@pytest.mark.parametrize("overrides, message", [
    (["data=modular", "backbone=quadratic_mlp", "norm=none", "regularizer=[ipr_pruning]",
      "data.augment.crop_padding=1"], "data.augment.crop_padding=1 is invalid: must be 0 for data=modular"),
    (["data=modular", "regularizer=[ipr_pruning]", "norm=none"],
     "regularizer=ipr_pruning measures the quadratic MLP's neurons, not backbone=convnet"),
    (["backbone=quadratic_mlp", "norm=none", "regularizer=[ipr_pruning]"],
     "not data=digits; use data=modular"),
    (["+exp=grokking", "data.operation=division"], "data.operation='division' is invalid: allowed: addition, "
                                                   "multiplication"),
    (["+exp=grokking", "data.train_fraction=1.0"], "data.train_fraction=1.0 is invalid"),
    (["+exp=grokking", "regularizer.ipr_pruning.fractions=[0.5,2]"], "regularizer.ipr_pruning.fractions=[0.5, 2]"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, overrides, message):
    done = run_regbench("train", *overrides, "trainer.max_epochs=1", "logger=none", "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
