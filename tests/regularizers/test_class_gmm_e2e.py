"""class_gmm through the real CLI on digits: a run reports eval=[ood]'s `method` score for the final and the best
model, the preset trains, and bad values and stacks are refused in one line before a run directory exists."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none", "trainer.max_epochs=1", "regularizer.class_gmm.attribute_dim=64",
        "regularizer.class_gmm.components=8", "regularizer.class_gmm.bottleneck_dim=16"]


def metrics_of(tmp_path) -> dict:
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    return payload


def test_a_digits_run_reports_its_own_ood_score(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[class_gmm]", "eval=[ood]", "eval.ood.scores=[msp,energy,method]",
                        *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    metrics = metrics_of(tmp_path)["metrics"]
    for prefix in ("test", "best_test"):
        for metric in ("auroc", "aupr", "fpr95"):
            assert 0.0 <= metrics[f"ood.synthetic.method.{prefix}_{metric}"] <= 1.0
    assert metrics["ood.synthetic.method.test_auroc"] != metrics["ood.synthetic.msp.test_auroc"]


def test_the_preset_trains_and_reports_every_score(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=class_gmm", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = metrics_of(tmp_path)
    assert payload["exp_name"] == "class_gmm"
    for score in ("msp", "max_logit", "energy", "mahalanobis", "method"):
        assert f"ood.synthetic.{score}.test_auroc" in payload["metrics"]


@pytest.mark.parametrize("override,message", [
    ("regularizer.class_gmm.attribute_dim=60", "regularizer.class_gmm.attribute_dim=60 is invalid: must be a multiple "
     "of components=8"),
    ("regularizer.class_gmm.covariance=spherical",
     "regularizer.class_gmm.covariance='spherical' is invalid: must be one of full, diagonal"),
    ("regularizer.class_gmm.components=0", "regularizer.class_gmm.components=0 is invalid"),
    ("regularizer.class_gmm.weight=-1", "regularizer.class_gmm.weight=-1 is invalid: must be a number >= 0"),
    ("regularizer.class_gmm.weight_momentum=0", "regularizer.class_gmm.weight_momentum=0 is invalid"),
    ("regularizer.class_gmm.covariance_ridge=-0.1", "regularizer.class_gmm.covariance_ridge=-0.1 is invalid"),
    ("regularizer=[class_gmm,mixup]", "regularizer=class_gmm cannot be stacked with mixup"),
    ("regularizer=[class_gmm,ema]", "regularizer=class_gmm cannot be stacked with ema"),
    ("regularizer=[class_gmm,coteaching]", "regularizer=class_gmm cannot be stacked with coteaching"),
    ("regularizer=[class_gmm,multisample_dropout]", "regularizer=class_gmm cannot be stacked with multisample_dropout"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, override, message):
    extra = [] if override.startswith("regularizer=") else ["regularizer=[class_gmm]"]
    done = run_regbench("train", *extra, *TINY, override, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
