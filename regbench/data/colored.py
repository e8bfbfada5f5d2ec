"""Coloured digits and coloured MNIST: the grey digits painted in a colour that is spuriously correlated with the
label (see subpopulations.py), for per-group accuracy ("Accuracy on the Curve", Liang et al., 2023)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from regbench.data.base import ImageData
from regbench.data.digits import load_digits
from regbench.data.facts import FIRST_HIGH_DIGIT
from regbench.data.mnist import load_mnist
from regbench.data.subpopulations import assign_colors, colorize
from regbench.specs.data import DATASETS

# spurious.labels=binary: digits 0-4 are class 0, 5-9 class 1 (the coloured MNIST of Arjovsky et al., 2019).
BINARY_CLASSES = ["0-4", "5-9"]


def color_dataset(grey: ImageData, spurious: Mapping[str, Any]) -> ImageData:
    """`grey` (digit labels, one channel) as the coloured task: its labels (binary or the digits), its images in
    each one's colour; the training colours follow `spurious.correlation`, the test colours `test_correlation`,
    both drawn from `spurious.seed`."""
    def task_labels(digits: torch.Tensor) -> torch.Tensor:
        return digits if spurious["labels"] == "digit" else (digits >= FIRST_HIGH_DIGIT).long()

    train_y, test_y = task_labels(grey.train_y), task_labels(grey.test_y)
    classes = grey.classes if spurious["labels"] == "digit" else BINARY_CLASSES
    rng = np.random.default_rng(spurious["seed"])
    train_colors = assign_colors(train_y, len(classes), spurious["correlation"], rng)
    test_colors = assign_colors(test_y, len(classes), spurious["test_correlation"], rng)
    # The grey set's statistics on every channel: a colour only scales the intensity, and a channel that no colour
    # uses (blue in the binary task) would have a zero std of its own.
    return ImageData(colorize(grey.train_x, train_colors), train_y, colorize(grey.test_x, test_colors), test_y,
                     classes=list(classes), mean=grey.mean * 3, std=grey.std * 3, hflip_ok=False,
                     train_colors=train_colors, test_colors=test_colors)


@DATASETS.register("colored_digits")
def load_colored_digits(*, root: str, download: bool, split_seed: int, spurious: Mapping[str, Any],
                        test_fraction: float) -> ImageData:
    grey = load_digits(root=root, download=download, split_seed=split_seed, test_fraction=test_fraction)
    return color_dataset(grey, spurious)


@DATASETS.register("colored_mnist")
def load_colored_mnist(*, root: str, download: bool, split_seed: int, spurious: Mapping[str, Any],
                       cache: bool) -> ImageData:
    grey = load_mnist(root=root, download=download, split_seed=split_seed, cache=cache)
    return color_dataset(grey, spurious)
