"""`regbench train` with crafted-shift validation through the real CLI on digits, two epochs: history.csv holds the
crafted validation accuracy of every epoch, crafted_best.ckpt is the epoch of its best, and metrics.json tests both
selections (best_test_* and crafted_best_test_*, each also under unseen corruptions) and names the fold's shift
types."""
from __future__ import annotations

import csv

import pytest
import torch
from run_dirs import completed_metrics

pytestmark = pytest.mark.slow


def test_both_selections_are_tested_and_the_crafted_one_follows_its_history(run_regbench, tmp_path):
    result = run_regbench("train", "+exp=crafted_shift_validation", "data.crafted_val.fold=1", "trainer.max_epochs=2",
                          "eval=[corruptions]", "eval.corruptions.names=[shot_noise,pixelate]",
                          "eval.corruptions.severities=[3]", "logger=none", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    payload = completed_metrics(tmp_path / "run")
    metrics = payload["metrics"]
    assert payload["crafted_val"]["validated"] == ["contrast", "brightness"]
    assert payload["crafted_val"]["trained"] == ["gaussian_noise", "gaussian_blur"]
    assert (payload["crafted_val"]["folds"], payload["crafted_val"]["fold"]) == (2, 1)

    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    crafted = [float(row["val_crafted_acc"]) for row in rows]
    assert len(crafted) == 2 and all(0 <= accuracy <= 1 for accuracy in crafted)
    epoch = crafted.index(max(crafted))
    assert payload["crafted_val"]["selected_epoch"] == {"plain": metrics["best_epoch"], "crafted": epoch}
    assert metrics["crafted_best_epoch"] == epoch
    assert metrics["crafted_best_val_crafted_acc"] == pytest.approx(max(crafted))
    assert metrics["crafted_best_val_acc"] == pytest.approx(float(rows[epoch]["val_acc"]))
    assert metrics["val_crafted_acc"] == pytest.approx(crafted[-1])
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "crafted_best.ckpt", map_location="cpu",
                            weights_only=True)
    assert checkpoint["epoch"] == epoch
    for prefix in ("best_test", "crafted_best_test"):
        assert 0 <= metrics[f"{prefix}_acc"] <= 1
        assert metrics[f"corruptions.{prefix}_acc_mean"] == pytest.approx(
            (metrics[f"corruptions.shot_noise.{prefix}_acc"] + metrics[f"corruptions.pixelate.{prefix}_acc"]) / 2)
    if epoch == metrics["best_epoch"]:  # one checkpoint's weights, tested twice
        assert metrics["crafted_best_test_acc"] == pytest.approx(metrics["best_test_acc"])
    elif epoch == len(rows) - 1:
        assert metrics["crafted_best_test_acc"] == pytest.approx(metrics["test_acc"])
