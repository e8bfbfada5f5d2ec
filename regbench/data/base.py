"""What every dataset loader returns: decoded uint8 images as tensors plus the facts the pipeline needs (what is
known before loading is in facts.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from regbench.errors import UserError


@dataclass
class ImageData:
    train_x: torch.Tensor  # uint8, (N, C, H, W)
    train_y: torch.Tensor  # int64, (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]  # per-channel, on the [0, 1] pixel scale
    std: tuple[float, ...]
    hflip_ok: bool  # whether a horizontal flip preserves the label (not for digits)
    val_idx: torch.Tensor | None = None  # positions in train_x of a given validation split (folder datasets)
    # Each image's spurious colour (coloured datasets, see subpopulations.py): with the label it names the group.
    train_colors: torch.Tensor | None = None
    test_colors: torch.Tensor | None = None
    # The test images of the classes data.holdout_classes dropped (see holdout.py); None when none are held out.
    held_out_test_x: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def check_label_range(labels: np.ndarray, low: int, high: int, source: str) -> None:
    """Refuse, naming `source` and the first offending label, labels outside [low, high]: a corrupt file or one
    from another dataset would otherwise fail deep inside training."""
    outside = np.flatnonzero((labels < low) | (labels > high))
    if len(outside):
        raise UserError(f"{source} holds label {labels[outside[0]]} (at position {outside[0]}); allowed labels: "
                        f"{low}..{high}; the file is corrupt or from another dataset: re-fetch it")
