"""`regbench train eval=[ood,farms]` through the real CLI on a tiny budget, digits against synthetic blobs and a
tiny Fashion-MNIST: metrics.json holds every OOD and FARMS metric of the final and best models, W&B's summary gets
them, and `regbench compare` shows them with their direction."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from run_dirs import completed_metrics

pytestmark = pytest.mark.slow
SCORES = ("msp", "max_logit", "energy", "mahalanobis")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as torchvision's MNIST layout holds it (magic 2051 for images, 2049 for labels)."""
    header = (2051 if array.ndim == 3 else 2049).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big")
                                                                              for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_tiny_fashion_mnist(root: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 50)):
        write_idx(root / "FashionMNIST" / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / "FashionMNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


def test_ood_and_farms_metrics_reach_metrics_json_wandb_and_compare(run_regbench, offline_wandb_run, tmp_path):
    write_tiny_fashion_mnist(tmp_path / "data")
    result = run_regbench("train", "eval=[ood,farms]", "eval.ood.datasets=[synthetic,fashion_mnist]",
                          "eval.ood.mahalanobis_epsilon=0.001", "trainer.max_epochs=1", "backbone.widths=[8,16]",
                          f"data.root={tmp_path / 'data'}", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr
    metrics = completed_metrics(tmp_path / "run")["metrics"]
    for prefix in ("test", "best_test"):
        for dataset in ("synthetic", "fashion_mnist"):
            for score in SCORES:
                assert 0 <= metrics[f"ood.{dataset}.{score}.{prefix}_auroc"] <= 1
                assert 0 < metrics[f"ood.{dataset}.{score}.{prefix}_aupr"] <= 1
                assert 0 <= metrics[f"ood.{dataset}.{score}.{prefix}_fpr95"] <= 1
        layers = {key for key in metrics if key.startswith("farms.") and key.endswith(f".{prefix}_alpha")}
        assert layers == {f"farms.{layer}.{prefix}_alpha" for layer in ("features.0", "features.3", "head")}
        assert metrics[f"farms.{prefix}_alpha_mean"] == pytest.approx(np.mean([metrics[key] for key in layers]))
    # Even one epoch separates digits from Gaussian blobs on the penultimate features.
    assert metrics["ood.synthetic.mahalanobis.test_auroc"] > 0.8

    summary = offline_wandb_run(tmp_path / "run" / "wandb").summary
    for key in ("ood.synthetic.energy.test_auroc", "ood.fashion_mnist.msp.best_test_fpr95", "farms.test_alpha_mean"):
        assert summary[key] == pytest.approx(metrics[key])

    for metric, lower in (("ood.fashion_mnist.mahalanobis.test_auroc", False),
                          ("ood.synthetic.energy.best_test_fpr95", True)):
        compared = run_regbench("compare", "run", "--metric", metric, "--format", "json")
        assert compared.returncode == 0, compared.stderr
        report = json.loads(compared.stdout)
        assert report["metric"] == metric and report["lower_is_better"] is lower


def test_a_missing_out_distribution_file_stops_the_run_before_training(run_regbench, tmp_path):
    result = run_regbench("train", "eval=[ood]", "eval.ood.datasets=[mnist]", f"data.root={tmp_path / 'empty'}",
                          "trainer.max_epochs=1", "logger=none", "hydra.run.dir=run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"regbench train: error: MNIST files not found: {tmp_path / 'empty' / 'MNIST' / 'raw'}")
    assert not (tmp_path / "run" / "history.csv").exists()
