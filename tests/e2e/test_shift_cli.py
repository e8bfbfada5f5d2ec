"""`regbench train eval=[corruptions,lame]` through the real CLI on a tiny budget on digits: metrics.json holds every
default corruption's accuracy per severity, per corruption and their mean, and LAME's accuracy with and without
adaptation on the clean and corrupted streams in both orders, for the final and the best model; the other
corruptions on grey digits; saturate on colour images."""
from __future__ import annotations

import pytest
from run_dirs import completed_metrics

from regbench.specs.evaluation import CORRUPTIONS

pytestmark = pytest.mark.slow
# the default eval.corruptions.names (conf/eval/corruptions.yaml): the cheap ones that take grey images
GREY_CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "contrast", "brightness",
                    "pixelate"]
OTHER_CORRUPTIONS = [name for name in CORRUPTIONS if name not in GREY_CORRUPTIONS and name != "saturate"]


def assert_corruption_metrics(metrics: dict, prefix: str, names: list[str]) -> None:
    """Each corruption's accuracy per severity 1-5, their mean per corruption, and the mean over corruptions."""
    for name in names:
        per_severity = [metrics[f"corruptions.{name}.{severity}.{prefix}_acc"] for severity in range(1, 6)]
        assert all(0 <= accuracy <= 1 for accuracy in per_severity)
        assert metrics[f"corruptions.{name}.{prefix}_acc"] == pytest.approx(sum(per_severity) / 5)
    assert metrics[f"corruptions.{prefix}_acc_mean"] == pytest.approx(
        sum(metrics[f"corruptions.{name}.{prefix}_acc"] for name in names) / len(names))


def test_corruption_and_lame_metrics_reach_metrics_json(run_regbench, tmp_path):
    result = run_regbench("train", "eval=[corruptions,lame]", "eval.lame.corruption=gaussian_noise",
                          "trainer.max_epochs=1", "backbone.widths=[8,16]", "logger=none", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    metrics = completed_metrics(tmp_path / "run")["metrics"]
    for prefix in ("test", "best_test"):
        assert_corruption_metrics(metrics, prefix, GREY_CORRUPTIONS)
        for stream in ("iid", "class_ordered", "gaussian_noise.iid", "gaussian_noise.class_ordered"):
            assert 0 <= metrics[f"lame.{stream}.{prefix}_acc"] <= 1
            assert 0 <= metrics[f"lame.{stream}.{prefix}_acc_unadapted"] <= 1
        # The unadapted model predicts each image alone: its accuracy does not depend on the stream's order.
        assert metrics[f"lame.iid.{prefix}_acc_unadapted"] == pytest.approx(
            metrics[f"lame.class_ordered.{prefix}_acc_unadapted"])
    assert metrics["lame.iid.test_acc_unadapted"] == pytest.approx(metrics["test_acc"])
    # Severity 5 contrast (factor 0.15) is far from what one epoch trained on.
    assert metrics["corruptions.contrast.5.test_acc"] < metrics["test_acc"]


def test_the_other_corruptions_reach_metrics_json(run_regbench, tmp_path):
    result = run_regbench("train", "eval=[corruptions]", f"eval.corruptions.names=[{','.join(OTHER_CORRUPTIONS)}]",
                          "trainer.max_epochs=1", "backbone.widths=[8,16]", "logger=none", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    metrics = completed_metrics(tmp_path / "run")["metrics"]
    for prefix in ("test", "best_test"):
        assert_corruption_metrics(metrics, prefix, OTHER_CORRUPTIONS)


def test_saturate_runs_on_colour_images(run_regbench, tmp_path):
    result = run_regbench("train", "data=synthetic", "data.channels=3", "eval=[corruptions,lame]",
                          "eval.corruptions.names=[saturate]", "eval.corruptions.severities=[1,5]",
                          "eval.lame.corruption=saturate", "trainer.max_epochs=1", "logger=none", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    metrics = completed_metrics(tmp_path / "run")["metrics"]
    assert metrics["corruptions.test_acc_mean"] == pytest.approx(
        (metrics["corruptions.saturate.1.test_acc"] + metrics["corruptions.saturate.5.test_acc"]) / 2)
    assert 0 <= metrics["lame.saturate.class_ordered.best_test_acc"] <= 1
