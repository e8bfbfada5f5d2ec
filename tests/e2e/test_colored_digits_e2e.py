"""`regbench train data=colored_digits` through the real CLI: metrics.json's `groups` (final and best model) and the
group scalars in metrics and in the logger."""
import csv

import pytest
from run_dirs import completed_metrics


@pytest.mark.slow
def test_colored_digits_run_reports_groups(run_regbench, tmp_path):
    run_dir = tmp_path / "run"
    result = run_regbench("train", "data=colored_digits", "data.spurious.correlation=0.95", "trainer.max_epochs=1",
                          "backbone.widths=[8,16]", "logger=csv", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-2000:]
    payload = completed_metrics(run_dir)
    groups, metrics = payload["groups"], payload["metrics"]
    assert groups["colors"] == ["red", "green"]
    for model, prefix in (("final", "test"), ("best", "best_test")):
        report = groups[model]
        per_group = report["per_group"]
        assert [(g["label"], g["color"]) for g in per_group] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert sum(g["count"] for g in per_group) == 359  # the whole test split, about half in each colour
        majority = [g for g in per_group if g["label"] == g["color"]]
        correct = sum(g["acc"] * g["count"] for g in majority)
        assert report["majority_acc"] == pytest.approx(correct / sum(g["count"] for g in majority))
        assert report["worst_group_acc"] == min(g["acc"] for g in per_group)
        assert metrics[f"{prefix}_majority_acc"] == report["majority_acc"]
        assert metrics[f"{prefix}_minority_acc"] == report["minority_acc"]
        assert metrics[f"{prefix}_worst_group_acc"] == report["worst_group_acc"]
    # Test accuracy is the count-weighted mean of the group accuracies.
    final = groups["final"]["per_group"]
    assert metrics["test_acc"] == pytest.approx(sum(g["acc"] * g["count"] for g in final) / 359, abs=1e-6)
    with (run_dir / "csv_logs" / "metrics.csv").open() as handle:
        logged = {key for row in csv.DictReader(handle) for key, value in row.items() if value}
    assert {"test_minority_acc", "best_test_majority_acc", "best_test_worst_group_acc"} <= logged
