"""`regbench train` on digits with two classes held out, scored against them by MSP and the Mahalanobis feature
ensemble (both layer choices, both weight fits): the held-out classes never reach the model and the detection
metrics reach metrics.json."""
from __future__ import annotations

import pytest
from run_dirs import completed_metrics


@pytest.mark.parametrize("layers,fit", [("penultimate", "fgsm"), ("all", "ood_validation")])
def test_digits_against_its_held_out_classes(run_regbench, tmp_path, layers, fit):
    result = run_regbench("train", "eval=[ood]", "eval.ood.datasets=[heldout]", "data.holdout_classes=[8,9]",
                          "eval.ood.scores=[msp,mahalanobis_ensemble]", f"eval.ood.mahalanobis_layers={layers}",
                          f"eval.ood.mahalanobis_ensemble_fit={fit}", "trainer.max_epochs=1", "logger=none",
                          "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    payload = completed_metrics(tmp_path / "run")
    assert payload["classes"] == [str(digit) for digit in range(8)]
    metrics = payload["metrics"]
    for prefix in ("test", "best_test"):
        for score in ("msp", "mahalanobis_ensemble"):
            assert 0 <= metrics[f"ood.heldout.{score}.{prefix}_auroc"] <= 1
            assert 0 < metrics[f"ood.heldout.{score}.{prefix}_aupr"] <= 1
            assert 0 <= metrics[f"ood.heldout.{score}.{prefix}_fpr95"] <= 1
    # one epoch already tells most digits 8 and 9 from the eight digits it learned
    assert metrics["ood.heldout.mahalanobis_ensemble.test_auroc"] > 0.6
