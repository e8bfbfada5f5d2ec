"""The streaming path for folder datasets too large for memory: DataLoader workers decode and augment each
batch's files, in the batch order of the in-memory path.

Guarantees, against the in-memory path (module.py): the same sample order for a seed and epoch (the same
permutation code, drawn on the same device), the same per-sample index (the position in the training split, as
ELR, Co-teaching and the noise statistics need), the same resumption mid-epoch (the position is checkpointed state
and the skipped batches are never decoded), and the same augmentation semantics: the same random-resized-crop box
distribution (images.resized_crop_boxes) or padded crop, and flip probability 0.5. The draws differ: each sample
has its own generator, seeded by (seed, epoch, rank, slot in the epoch), so a sample's augmentation does not
depend on the number of workers, and a resumed epoch augments its remaining batches as the uninterrupted one.
The random-resized crop is cut from the whole decoded image here, from the stored (centre-cropped) view in memory.
Evaluation images are the same stored view on both paths, bit for bit.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from regbench.data.batches import BatchAugment, TensorBatches
from regbench.data.folder_datasets import Decoding, FolderData, channel_statistics, decode_files
from regbench.data.imbalance import UpsampleWeights
from regbench.data.images import random_flip, read_image, resized_crop_boxes, stored_view
from regbench.data.module import ImageDataModule
from regbench.data.rs2 import RepeatedRandomSubsets
from regbench.data.storage import choose_storage
from regbench.errors import UserError

# Training images decoded to estimate mean/std when the config gives none and the data is streamed.
STATISTICS_SAMPLE = 1000
NO_AUGMENTATION = -1


def sample_seed(seed: int, epoch: int, rank: int, slot: int) -> int:
    return (((seed * 1_000_003 + epoch) * 1_009 + rank) * 100_000_007 + slot) % 2 ** 63


class StreamAugment:
    """One image's training augmentation from its own generator (see the module docstring)."""

    def __init__(self, decoding: Decoding, augment: BatchAugment):
        self.decoding, self.augment = decoding, augment

    def __call__(self, path: str, seed: int) -> torch.Tensor:
        from torchvision.transforms.v2.functional import pad, resized_crop

        gen = torch.Generator().manual_seed(seed)
        size = self.decoding.image_size
        image = read_image(path, self.decoding.channels)
        if self.augment.resized_crop:
            box = resized_crop_boxes(torch.tensor([image.shape[1]]), torch.tensor([image.shape[2]]), gen)[0]
            image = resized_crop(image, *box.tolist(), [size, size], antialias=True)
        else:
            image = stored_view(image, size, self.decoding.crop_fraction)
            if self.augment.crop_padding:
                p = self.augment.crop_padding
                padded = pad(image, [p, p, p, p], padding_mode="reflect")
                top, left = torch.randint(0, 2 * p + 1, (2,), generator=gen).tolist()
                image = padded[:, top:top + size, left:left + size]
        return random_flip(image, gen) if self.augment.hflip else image


class StreamedImages(Dataset):
    """One split's files; an item (position, augmentation seed) gives (uint8 image, position), or the one-line
    reason the file could not be read in place of the image (raised in the training process)."""

    def __init__(self, paths: np.ndarray, decoding: Decoding, augment: StreamAugment | None):
        self.paths, self.decoding, self.augment = paths, decoding, augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]):
        position, seed = item
        path = str(self.paths[position])
        try:
            image = self.decoding.read(path) if seed == NO_AUGMENTATION else self.augment(path, seed)
        except UserError as err:
            return str(err), position
        return image, position


def collate(items: list) -> tuple:
    for image, _ in items:
        if isinstance(image, str):
            return image, None
    return torch.stack([image for image, _ in items]), torch.tensor([position for _, position in items])


class PlannedBatches(Sampler):
    """The loader's batch sampler: batches `first`..`last - 1` of the epoch's `order` (set before each pass), each
    sample with its augmentation seed, made as the loader asks for them (an ImageNet epoch is 1.28M samples)."""

    def __init__(self) -> None:
        self.order, self.batch_size, self.first, self.last = torch.zeros(0, dtype=torch.long), 1, 0, 0
        self.seed_of: Callable[[int], int] | None = None

    def plan(self, order: torch.Tensor, batch_size: int, first: int, last: int,
             seed_of: Callable[[int], int] | None) -> None:
        self.order, self.batch_size, self.first, self.last, self.seed_of = order, batch_size, first, last, seed_of

    def __iter__(self):
        size = self.batch_size
        for p in range(self.first, self.last):
            yield [(i, NO_AUGMENTATION if self.seed_of is None else self.seed_of(slot))
                   for slot, i in enumerate(self.order[p * size:(p + 1) * size].tolist(), start=p * size)]

    def __len__(self) -> int:
        return self.last - self.first


class StreamBatches(TensorBatches):
    """TensorBatches' order, length and checkpointed position, with the images read from files by DataLoader
    workers; yields normalized images on the labels' device."""

    def __init__(self, files: StreamedImages, labels: torch.Tensor, batch_size: int, *, normalize, shuffle: bool,
                 num_workers: int, seed: int = 0, drop_last: bool = False,
                 sample_weights: UpsampleWeights | None = None, shard: bool = True,
                 subsets: RepeatedRandomSubsets | None = None):
        super().__init__(None, labels, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                         sample_weights=sample_weights, shard=shard, subsets=subsets)
        self.files, self.normalize = files, normalize
        self._planned = PlannedBatches()
        self.loader = DataLoader(files, batch_sampler=self._planned, num_workers=num_workers, collate_fn=collate,
                                 pin_memory=labels.device.type == "cuda", persistent_workers=num_workers > 0,
                                 # Worker seeds from a generator of its own: the global random streams (dropout,
                                 # mixing) stay as the in-memory path leaves them.
                                 generator=torch.Generator().manual_seed(seed))

    def __iter__(self):
        if self.position >= len(self):
            self.set_epoch(self.epoch + 1)
        rank, _ = self._world()
        seed, epoch = self.seed, self.epoch
        self._planned.plan(self._shard().cpu(), self.batch_size, self.position, len(self),
                           None if self.files.augment is None else lambda slot: sample_seed(seed, epoch, rank, slot))
        device = self.labels.device
        for images, positions in self.loader:
            if positions is None:
                raise UserError(images)
            self.position += 1
            index = positions.to(device)
            yield self.normalize(images.to(device, non_blocking=True)), self.labels[index], index


class StreamingDataModule(ImageDataModule):
    """ImageDataModule's splits, labels and sampling, with the images streamed from their files."""

    def __init__(self, data: FolderData, *, num_workers: int, **settings):
        super().__init__(data, **settings)
        self.decoding, self.num_workers = data.decoding, num_workers

    def _batches_of(self, split: str, shard: bool = True) -> StreamBatches:
        files, labels, _ = self.splits[split]
        train = split == "train"
        augment = StreamAugment(self.decoding, self.augment) if train else None
        return StreamBatches(StreamedImages(files.paths, self.decoding, augment), labels.to(self.stream_device),
                             self.batch_size, normalize=self.normalize, shuffle=train, num_workers=self.num_workers,
                             seed=self.seed, drop_last=train, shard=shard,
                             sample_weights=(self.sample_weights.to(self.stream_device)
                                             if train and self.sample_weights is not None else None),
                             subsets=self.train_subsets(self._world_size()) if train else None)

    def setup(self, stage: str | None = None) -> None:
        if self._batches:
            return
        self.stream_device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.batch_size > self.split_size("train"):
            raise UserError(f"data.batch_size={self.batch_size} is larger than the {self.split_size('train')} "
                            f"training images; use a smaller batch size")
        self._batches = {split: self._batches_of(split) for split in self.splits}

    def unsharded_test_batches(self) -> StreamBatches:
        return self._batches_of("test", shard=False)


def with_statistics(data: FolderData, split_seed: int) -> FolderData:
    """`data` with mean/std estimated from a seeded sample of its training images when the config gives none."""
    if data.mean is not None:
        return data
    positions = data.training_positions()
    sample = np.random.default_rng(split_seed).permutation(positions)[:STATISTICS_SAMPLE]
    mean, std = channel_statistics(decode_files(data.train_x.paths[np.sort(sample)], data.decoding))
    return dataclasses.replace(data, mean=mean, std=std)


def folder_datamodule(data: FolderData, cfg: Mapping[str, Any], settings: dict[str, Any]) -> ImageDataModule:
    """In memory when the dataset fits data.max_memory_gb (or data.storage says so), else streamed."""
    if choose_storage(cfg, data.decoded_bytes()) == "memory":
        return ImageDataModule(data.decode(), **settings)
    return StreamingDataModule(with_statistics(data, cfg["split_seed"]), num_workers=cfg["num_workers"],
                               **settings)
