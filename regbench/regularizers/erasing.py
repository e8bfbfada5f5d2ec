"""Cutout (DeVries & Taylor, 2017): zero square holes, vectorized over the batch on its device."""
from __future__ import annotations

import torch

from regbench.regularizers.base import Regularizer
from regbench.runshape import count_or_fraction
from regbench.specs.regularizers import REGULARIZERS


def cutout_mask(centers_y: torch.Tensor, centers_x: torch.Tensor, length: int, height: int,
                width: int) -> torch.Tensor:
    """(B, H, W) bool, True inside any hole. Hole k of sample b spans rows [cy - length//2, cy + length//2)
    and the same columns, clipped at the border, as in the paper's code; centers are (B, n_holes)."""
    rows = torch.arange(height, device=centers_y.device)
    cols = torch.arange(width, device=centers_x.device)
    half = length // 2
    in_rows = (rows >= centers_y[..., None] - half) & (rows < centers_y[..., None] + half)  # (B, n, H)
    in_cols = (cols >= centers_x[..., None] - half) & (cols < centers_x[..., None] + half)  # (B, n, W)
    return (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)


@REGULARIZERS.register("cutout")
class Cutout(Regularizer):
    """Each image gets `n_holes` squares of side `length`, centred uniformly over the image (so they may cross
    the border), filled with zero after normalization -- the dataset mean, as the paper's code does. `length` is
    in pixels (an integer) or a fraction of the image side (a float in (0, 1)), so one setting fits every
    dataset."""

    name = "cutout"

    def __init__(self, *, length: int | float, n_holes: int, seed: int):
        self.length, self.n_holes, self.seed = length, n_holes, seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def mix_batch(self, images, targets, index):
        batch, height, width = images.shape[0], *images.shape[-2:]
        gen = self._generator(images.device)
        centers_y = torch.randint(0, height, (batch, self.n_holes), generator=gen, device=images.device)
        centers_x = torch.randint(0, width, (batch, self.n_holes), generator=gen, device=images.device)
        length = count_or_fraction(self.length, min(height, width))
        holes = cutout_mask(centers_y, centers_x, length, height, width)
        return images.masked_fill(holes[:, None], 0.0), targets
