"""AbeT through the real CLI on digits: the preset trains and metrics.json holds its own OOD score (`method`) of
the final and best models beside MSP and energy; it stacks with a feature dropout and EMA; nonsense is refused in
one line before a run directory."""
from __future__ import annotations

import pytest
import torch
from run_dirs import completed_metrics

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none"]


def test_the_preset_trains_and_reports_its_own_ood_score(run_regbench, tmp_path):
    done = run_regbench("train", "+exp=abet", "eval=[ood]", "eval.ood.scores=[msp,energy,method]",
                        "trainer.max_epochs=1", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "run")
    assert payload["exp_name"] == "abet" and payload["components"]["regularizer"] == "abet"
    metrics = payload["metrics"]
    for prefix in ("test", "best_test"):
        for score in ("msp", "energy", "method"):
            assert 0 <= metrics[f"ood.synthetic.{score}.{prefix}_auroc"] <= 1
            assert 0 < metrics[f"ood.synthetic.{score}.{prefix}_aupr"] <= 1
            assert 0 <= metrics[f"ood.synthetic.{score}.{prefix}_fpr95"] <= 1
        # The network's logits are h / T, so the energy score at eval.ood.energy_temperature=1, logsumexp(h / T),
        # is AbeT's score: the two must rank the images alike.
        assert metrics[f"ood.synthetic.method.{prefix}_auroc"] == pytest.approx(
            metrics[f"ood.synthetic.energy.{prefix}_auroc"])
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert {"model.head.numerator.weight", "model.head.temperature.0.weight", "model.head.temperature.1.running_var"} \
        <= set(state)


def test_it_stacks_with_a_feature_dropout_and_ema(run_regbench, tmp_path):
    done = run_regbench("train", "regularizer=[dropout,abet,ema]", "eval=[ood]", "eval.ood.scores=[method]",
                        "trainer.max_epochs=1", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "run")
    assert payload["components"]["regularizer"] == "dropout+abet+ema"
    assert 0 <= payload["metrics"]["ood.synthetic.method.test_auroc"] <= 1


@pytest.mark.parametrize("overrides,message", [
    (["regularizer=[abet]", "regularizer.abet.numerator=euclidean"],
     "regularizer.abet.numerator='euclidean' is invalid: must be one of cosine, inner"),
    (["regularizer=[abet,batchformer]"], "regularizer=abet cannot be stacked with batchformer: "),
    (["regularizer=[sade,abet]"], "regularizer=abet cannot be stacked with sade: "),
])
def test_bad_settings_exit_2_in_one_line_before_a_run_directory(run_regbench, tmp_path, overrides, message):
    done = run_regbench("train", *overrides, *TINY, "hydra.run.dir=run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert not (tmp_path / "run").exists()
