"""MixOE through the real CLI on a tiny budget: digits trained with tiny Fashion-MNIST outliers and scored by
eval=[ood] against synthetic blobs, and the `+exp=mixoe` preset (its OOD test set, MNIST, written tiny)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from run_dirs import completed_metrics

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none", "trainer.max_epochs=1"]
SCORES = ("msp", "max_logit", "energy", "mahalanobis")


def write_tiny_idx_dataset(root: Path, folder: str, train: int, test: int) -> None:
    """Random 28x28 images and labels in torchvision's MNIST idx layout (magic 2051 images, 2049 labels)."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", train), ("t10k", test)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = (2051 if array.ndim == 3 else 2049).to_bytes(4, "big") + b"".join(
                d.to_bytes(4, "big") for d in array.shape)
            path = root / folder / "raw" / f"{prefix}-{kind}-ubyte"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(header + array.astype(np.uint8).tobytes())


def assert_ood_metrics(metrics: dict, dataset: str) -> None:
    for prefix in ("test", "best_test"):
        for score in SCORES:
            assert 0 <= metrics[f"ood.{dataset}.{score}.{prefix}_auroc"] <= 1
            assert 0 <= metrics[f"ood.{dataset}.{score}.{prefix}_fpr95"] <= 1


def test_mixoe_trains_with_file_outliers_and_reports_ood_metrics(run_regbench, tmp_path):
    write_tiny_idx_dataset(tmp_path / "data", "FashionMNIST", train=30, test=10)
    for mode in ("mixup", "cutmix"):
        done = run_regbench("train", "regularizer=[mixoe]", "regularizer.mixoe.outliers=fashion_mnist",
                            f"regularizer.mixoe.mode={mode}", "eval=[ood]", f"data.root={tmp_path / 'data'}", *TINY,
                            f"hydra.run.dir=run_{mode}")
        assert done.returncode == 0, done.stderr
        payload = completed_metrics(tmp_path / f"run_{mode}")
        assert payload["components"]["regularizer"] == "mixoe"
        assert_ood_metrics(payload["metrics"], "synthetic")
    # The outliers stay out of the checkpoints (a resumed run loads them again).
    state = torch.load(tmp_path / "run_mixup" / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    assert any(key.startswith("model.") for key in state)
    assert not [key for key in state if key.startswith("regularizer_state.")]


def test_the_preset_scores_an_ood_set_other_than_its_outliers(run_regbench, tmp_path):
    write_tiny_idx_dataset(tmp_path / "data", "MNIST", train=20, test=40)
    done = run_regbench("train", "+exp=mixoe", f"data.root={tmp_path / 'data'}", *TINY, "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr
    payload = completed_metrics(tmp_path / "run")
    assert payload["exp_name"] == "mixoe"
    assert_ood_metrics(payload["metrics"], "mnist")
