"""In-memory batching the airbench way: tensors live on the model's device, each epoch cuts batches by
index from a seeded permutation, and augmentation runs on whole batches (no per-sample Python)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from regbench.data.imbalance import UpsampleWeights
from regbench.data.images import resized_crop_batch, resized_crop_boxes
from regbench.data.rs2 import RepeatedRandomSubsets
from regbench.runshape import batches_per_epoch


def distributed_rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def random_crop(padded: torch.Tensor, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """Crop one random (h, w) window per image out of a padded batch, by gathering index grids."""
    batch, _, padded_h, padded_w = padded.shape
    h, w = size
    dy = torch.randint(0, padded_h - h + 1, (batch,), generator=gen, device=padded.device)
    dx = torch.randint(0, padded_w - w + 1, (batch,), generator=gen, device=padded.device)
    rows = (dy[:, None] + torch.arange(h, device=padded.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=padded.device))[:, None, :]
    samples = torch.arange(batch, device=padded.device)[:, None, None]
    # Advanced indices split by a slice put the index dims first: (B, h, w, C).
    return padded[samples, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=gen, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class BatchAugment:
    """Random crop with reflect padding (pre-padded once) or a random-resized crop of the stored image
    (images.resized_crop_boxes), an optional horizontal flip, then an optional `shift` of the normalized batch
    (crafted-shift validation's training shifts, see crafted_val.py)."""

    def __init__(self, crop_padding: int, hflip: bool, resized_crop: bool = False,
                 shift: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None):
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.resized_crop = resized_crop
        self.shift = shift

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop_padding == 0:
            return images
        p = self.crop_padding
        return F.pad(images, (p, p, p, p), mode="reflect")

    def __call__(self, stored: torch.Tensor, size: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
        if self.resized_crop:
            sides = torch.tensor(stored.shape[2:], device=gen.device).expand(stored.shape[0], 2)
            images = resized_crop_batch(stored, resized_crop_boxes(sides[:, 0], sides[:, 1], gen), size)
        else:
            images = random_crop(stored, size, gen) if self.crop_padding else stored
        images = random_hflip(images, gen) if self.hflip else images
        return self.shift(images, gen) if self.shift is not None else images


class TensorBatches:
    """Yields (images, labels, sample_index) batches; under DDP each rank takes its own shard.

    With `sample_weights` each epoch draws n indices with replacement in proportion to that epoch's weights (class
    upsampling, cooled down from a switch epoch on), so an epoch has the same number of steps as without. With
    `subsets` (RS2, see rs2.py) each epoch takes only that epoch's random subset, in its order.

    The position inside the epoch is state (`state_dict`): Lightning saves it in checkpoints, so a run resumed
    from a mid-epoch checkpoint continues with the very batches it would have seen.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool,
                 seed: int = 0, augment: BatchAugment | None = None, image_size: tuple[int, int] | None = None,
                 drop_last: bool = False, sample_weights: UpsampleWeights | None = None, shard: bool = True,
                 subsets: RepeatedRandomSubsets | None = None):
        self.images, self.labels, self.sample_weights, self.shard = images, labels, sample_weights, shard
        self.subsets = subsets
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.augment, self.image_size, self.drop_last = augment, image_size, drop_last
        self.epoch = 0
        self.position = 0  # batches of this epoch already yielded

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]

    def _world(self) -> tuple[int, int]:
        return distributed_rank_and_size() if self.shard else (0, 1)

    def _epoch_images(self) -> int:
        return self.labels.shape[0] if self.subsets is None else self.subsets.round_images

    def _shard(self) -> torch.Tensor:
        n = self._epoch_images()
        rank, world = self._world()
        device = self.labels.device
        if self.subsets is not None:
            order = self.subsets.indices(self.epoch, device)
        elif self.shuffle:
            gen = torch.Generator(device=device).manual_seed(self.seed * 100_003 + self.epoch)
            if self.sample_weights is not None:
                order = torch.multinomial(self.sample_weights.at(self.epoch), n, replacement=True, generator=gen)
            else:
                order = torch.randperm(n, generator=gen, device=device)
        else:
            order = torch.arange(n, device=device)
        if world > 1:
            # Equal shards keep ranks in lock-step; shuffling spreads the dropped tail over epochs.
            order = order[: n - n % world] if self.shuffle else order
            order = order[rank::world]
        return order

    def __len__(self) -> int:
        _, world = self._world()
        return batches_per_epoch(self._epoch_images(), self.batch_size, world, shuffle=self.shuffle,
                                 drop_last=self.drop_last)

    def __iter__(self):
        if self.position >= len(self):
            # The last pass ended and nobody called set_epoch (e.g. resumed from an end-of-epoch checkpoint).
            self.set_epoch(self.epoch + 1)
        order = self._shard()
        if self.augment is not None:
            gen = torch.Generator(device=self.images.device).manual_seed(self.seed * 100_003 + self.epoch + 1)
            # Replay the skipped batches' draws so a resumed epoch augments like an uninterrupted one.
            for _ in range(self.position):
                self.augment(self.images[:self.batch_size], self.image_size, gen)
        while self.position < len(self):
            index = order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
            self.position += 1
            images = self.images[index]
            if self.augment is not None:
                images = self.augment(images, self.image_size, gen)
            yield images, self.labels[index], index
