"""RS2, Repeated Random Sampling (Okanovic et al., "Repeated Random Sampling for Minimizing the Time-to-Accuracy of
Learning", ICLR 2024): each epoch (the paper's "round") trains on a fresh random subset of a `fraction` of the
training split instead of the whole split, so a time budget buys more, shorter epochs over ever new data.

Two variants, as in the paper:
- without replacement (preferred): a seeded permutation of the split is cut into consecutive rounds, so no image
  repeats until every image was seen; then a new permutation starts (a "pass"). When the images left in a pass
  do not fill the last round, it is topped up with the pass's first images (so a round never holds an image twice),
  as the authors' code does;
- with replacement: every round is an independent random subset (no image twice within a round).

A round draws only the images it trains on: the fraction of the split cut down to whole batches on every rank
(`runshape.rs2_round_images`), so a pass without replacement trains on every image. Each round's images depend on
the seed and the epoch alone, so a resumed run draws exactly what an uninterrupted one draws.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from regbench.runshape import rs2_round_images

VARIANTS = {False: "without_replacement", True: "with_replacement"}


class RepeatedRandomSubsets:
    def __init__(self, train_images: int, round_images: int, replacement: bool, seed: int, fraction: float):
        self.train_images, self.round_images, self.replacement = train_images, round_images, replacement
        self.seed, self.fraction = seed, fraction

    @classmethod
    def for_config(cls, rs2: Mapping[str, Any], train_images: int, batch_size: int, world_size: int,
                   seed: int) -> "RepeatedRandomSubsets":
        """The data config's `rs2` section (fraction, replacement) on a split of `train_images`."""
        round_images = rs2_round_images(train_images, rs2["fraction"], batch_size, world_size)
        return cls(train_images, round_images, rs2["replacement"], seed, rs2["fraction"])

    @property
    def rounds_per_pass(self) -> int:
        """Rounds without replacement until every training image was drawn."""
        return math.ceil(self.train_images / self.round_images)

    def _permutation(self, draw: int, device: torch.device) -> torch.Tensor:
        # Its own seed stream, apart from TensorBatches' per-epoch order (seed * 100_003 + epoch).
        gen = torch.Generator(device=device).manual_seed(self.seed * 1_000_033 + 7_919 * draw + self.replacement)
        return torch.randperm(self.train_images, generator=gen, device=device)

    def indices(self, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The training positions of round `epoch` (from 0), in the order they are trained on."""
        device = torch.device(device)
        if self.replacement:
            return self._permutation(epoch, device)[:self.round_images]
        pass_index, round_index = divmod(epoch, self.rounds_per_pass)
        permutation = self._permutation(pass_index, device)
        start = round_index * self.round_images
        taken = permutation[start:start + self.round_images]
        return torch.cat([taken, permutation[:self.round_images - len(taken)]])

    def distinct_images(self, epochs: int) -> int:
        """Training images drawn at least once in the first `epochs` rounds."""
        seen = torch.zeros(self.train_images, dtype=torch.bool)
        for epoch in range(epochs):
            seen[self.indices(epoch)] = True
        return int(seen.sum())

    def report(self, epochs: int) -> dict[str, Any]:
        """metrics.json's `rs2` section after `epochs` rounds trained."""
        return {"fraction": self.fraction, "variant": VARIANTS[self.replacement], "images_per_epoch": self.round_images,
                "train_images": self.train_images, "epochs": epochs, "samples_seen": epochs * self.round_images,
                "distinct_images_seen": self.distinct_images(epochs)}
