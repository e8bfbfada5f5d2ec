"""Coloured digits and coloured MNIST: the grey digits painted in a colour that is spuriously correlated with the
label (see subpopulations.py), for per-group accuracy ("Accuracy on the Curve", Liang et al., 2023)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from regbench.data.base import DatasetFacts, ImageData
from regbench.data.digits import DIGITS_CLASS_COUNTS, load_digits
from regbench.data.mnist import MNIST_FACTS, load_mnist
from regbench.data.registry import register_dataset
from regbench.data.split import kept_counts
from regbench.data.subpopulations import assign_colors, colorize
from regbench.errors import check_fraction

# spurious.labels=binary: digits 0-4 are class 0, 5-9 class 1 (the coloured MNIST of Arjovsky et al., 2019).
BINARY_CLASSES = ["0-4", "5-9"]
_FIRST_HIGH_DIGIT = 5


def colored_counts(digit_counts: tuple[int, ...], labels: str) -> tuple[int, ...]:
    """Training images per class of the coloured task, from the images per digit."""
    if labels == "digit":
        return tuple(digit_counts)
    return sum(digit_counts[:_FIRST_HIGH_DIGIT]), sum(digit_counts[_FIRST_HIGH_DIGIT:])


def color_dataset(grey: ImageData, spurious: Mapping[str, Any]) -> ImageData:
    """`grey` (digit labels, one channel) as the coloured task: its labels (binary or the digits), its images in
    each one's colour; the training colours follow `spurious.correlation`, the test colours `test_correlation`,
    both drawn from `spurious.seed`."""
    def task_labels(digits: torch.Tensor) -> torch.Tensor:
        return digits if spurious["labels"] == "digit" else (digits >= _FIRST_HIGH_DIGIT).long()

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


def colored_digits_facts(*, spurious: Mapping[str, Any], test_fraction: float, **_) -> DatasetFacts:
    check_fraction("test_fraction", test_fraction)
    return DatasetFacts((3, 8, 8), colored_counts(kept_counts(DIGITS_CLASS_COUNTS, test_fraction), spurious["labels"]))


def colored_mnist_facts(*, spurious: Mapping[str, Any], **_) -> DatasetFacts:
    return DatasetFacts((3, 28, 28), colored_counts(MNIST_FACTS.train_class_counts, spurious["labels"]))


@register_dataset("colored_digits", facts=colored_digits_facts)
def load_colored_digits(*, root: str, download: bool, split_seed: int, spurious: Mapping[str, Any],
                        test_fraction: float = 0.2) -> ImageData:
    grey = load_digits(root=root, download=download, split_seed=split_seed, test_fraction=test_fraction)
    return color_dataset(grey, spurious)


@register_dataset("colored_mnist", facts=colored_mnist_facts)
def load_colored_mnist(*, root: str, download: bool, split_seed: int, spurious: Mapping[str, Any],
                       cache: bool = True) -> ImageData:
    grey = load_mnist(root=root, download=download, split_seed=split_seed, cache=cache)
    return color_dataset(grey, spurious)
