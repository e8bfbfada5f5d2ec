"""scikit-learn's bundled 8x8 digits: no download, the offline default."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from regbench.data.base import ImageData
from regbench.data.split import stratified_split
from regbench.errors import check_fraction
from regbench.specs.data import DATASETS

# sklearn stores pixels as integers 0..16.
_DIGITS_MAX = 16
# Pixel mean/std of the whole set on the [0, 1] scale.
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)


@DATASETS.register("digits")
def load_digits(*, root: str, download: bool, split_seed: int, test_fraction: float) -> ImageData:
    check_fraction("test_fraction", test_fraction)
    pixels, targets = read_sklearn_digits()
    images = torch.from_numpy(pixels).mul(255.0 / _DIGITS_MAX).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(targets).long()
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    return ImageData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                     classes=[str(d) for d in range(10)], mean=DIGITS_MEAN, std=DIGITS_STD, hflip_ok=False)


def read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) pixels and (1797,) labels from the file scikit-learn ships, read without importing sklearn (its
    import would add about a quarter of `import torch` to a run's start-up). Each row is 64 pixels, then the
    label, as sklearn.datasets.load_digits reads it; a test checks both agree."""
    sklearn = importlib.util.find_spec("sklearn")  # locates the package without importing it
    data = np.loadtxt(Path(sklearn.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz",
                      delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
