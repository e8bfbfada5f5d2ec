"""PALM through the real CLI on digits: it trains, eval=[ood] reports its own score as `method` for the final and the
best model, the preset trains beside every OOD score, and bad values and stacks are refused in one line before a run
directory exists."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none", "trainer.max_epochs=1"]
OOD = ["eval=[ood]", "eval.ood.scores=[msp,energy,method]"]


def test_a_run_reports_palms_own_ood_score(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[palm]", *OOD, *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    metrics = payload["metrics"]
    for prefix in ("test", "best_test"):
        for score in ("msp", "energy", "method"):
            for metric in ("auroc", "aupr", "fpr95"):
                assert 0.0 <= metrics[f"ood.synthetic.{score}.{prefix}_{metric}"] <= 1.0
    assert 0.0 <= metrics["test_acc"] <= 1.0


def test_the_preset_trains_with_every_ood_score(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=palm", "eval=[ood]", "eval.ood.scores=[msp,max_logit,energy,mahalanobis,method]",
                        *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed" and payload["exp_name"] == "palm"
    assert {"ood.synthetic.mahalanobis.test_auroc", "ood.synthetic.method.test_auroc"} <= set(payload["metrics"])


@pytest.mark.parametrize("override,message", [
    ("regularizer.palm.prototypes=0", "regularizer.palm.prototypes=0 is invalid: must be an integer > 0"),
    ("regularizer.palm.top_k=7", "regularizer.palm.top_k=7 is invalid: must be at most prototypes=6"),
    ("regularizer.palm.momentum=1", "regularizer.palm.momentum=1 is invalid: must be in [0, 1)"),
    ("regularizer.palm.temperature=0", "regularizer.palm.temperature=0 is invalid: must be a number > 0"),
    ("regularizer.palm.sinkhorn_iterations=0", "regularizer.palm.sinkhorn_iterations=0 is invalid"),
    ("regularizer.palm.weight=0", "regularizer.palm.weight=0 is invalid: must be a number > 0"),
    ("regularizer.palm.contrastive_weight=-1", "regularizer.palm.contrastive_weight=-1 is invalid"),
    ("regularizer=[palm,mixup]", "regularizer=palm cannot be stacked with mixup"),
    ("regularizer=[palm,ema]", "regularizer=palm cannot be stacked with ema"),
    ("regularizer=[palm,coteaching]", "regularizer=palm cannot be stacked with coteaching"),
    ("regularizer=[palm,dropout]", "palm and dropout both do penultimate-feature dropout"),
    ("regularizer=[palm,batchformer]", "regularizer=palm cannot be stacked with batchformer"),
    ("regularizer=[palm,sade]", "regularizer=palm cannot be stacked with sade"),
    ("regularizer=[palm,storm]", "regularizer=palm cannot be stacked with storm"),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, override, message):
    extra = [] if override.startswith("regularizer=") else ["regularizer=[palm]"]
    done = run_regbench("train", *extra, override, *OOD, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
