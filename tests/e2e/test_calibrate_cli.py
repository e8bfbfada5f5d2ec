"""`regbench train calibrate=[temperature,h_calibration]` through the real CLI on a tiny budget: metrics.json holds
the calibrated test metrics of the final and best models beside the raw ones, W&B's summary gets them, and
`regbench compare` shows them, lower being better."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
METHODS = ("temperature", "h_calibration")


def test_calibrated_metrics_reach_metrics_json_wandb_and_compare(run_regbench, offline_wandb_run, tmp_path):
    result = run_regbench("train", "calibrate=[temperature,h_calibration]", "trainer.max_epochs=1",
                          "backbone.widths=[8,16]", "calibrate.h_calibration.steps=20", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics = payload["metrics"]
    for method in METHODS:
        for prefix in ("test", "best_test"):
            assert metrics[f"calibrated.{method}.{prefix}_nll"] > 0
            assert 0 <= metrics[f"calibrated.{method}.{prefix}_ece"] <= 1
            section = payload["calibrated"][method][prefix]
            assert sum(section["reliability"]["bin_count"]) == sum(payload["calibration"]["bin_count"])
    assert payload["calibrated"]["temperature"]["test"]["fitted"]["temperature"] > 0
    assert set(payload["calibrated"]["h_calibration"]["test"]["fitted"]) == {
        "objective_initial", "objective", "mean_inverse_temperature"}
    # Temperature scaling minimizes the validation NLL; one epoch leaves the convnet far from calibrated.
    assert metrics["calibrated.temperature.test_nll"] < metrics["test_nll"]

    summary = offline_wandb_run(tmp_path / "run" / "wandb").summary
    flat = {**summary, **{f"calibrated.{method}.{key}": value
                          for method, values in summary.get("calibrated", {}).items() for key, value in values.items()}}
    assert flat["calibrated.temperature.test_nll"] == pytest.approx(metrics["calibrated.temperature.test_nll"])

    for method in METHODS:
        compared = run_regbench("compare", "run", "--metric", f"calibrated.{method}.test_ece", "--format", "json")
        assert compared.returncode == 0, compared.stderr
        report = json.loads(compared.stdout)
        assert report["metric"] == f"calibrated.{method}.test_ece" and report["lower_is_better"] is True


def test_calibration_without_a_validation_split_is_refused_before_any_run_directory(run_regbench, tmp_path):
    result = run_regbench("train", "calibrate=[temperature]", "data.val_fraction=0", "hydra.run.dir=run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "regbench train: error: calibrate=[temperature] fits on the validation split, but data.val_fraction=0 "
        "leaves none; set data.val_fraction in (0, 1) or drop calibrate")
    assert not (tmp_path / "run").exists()
