"""The folder datasets (image_folder, tiny_imagenet, imagenet): listed without decoding, so the storage choice
(in memory or streamed, see storage.py) can be made from their decoded size before any image is read."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from regbench.data.base import ImageData
from regbench.data.cache import cached_arrays
from regbench.data.facts import DatasetFacts, check_decoding_params
from regbench.data.folder import (FolderListing, images_channels, list_image_folder, list_imagenet,
                                  list_tiny_imagenet)
from regbench.data.images import read_image, stored_view
from regbench.errors import UserError, check_fraction
from regbench.specs.data import DATASETS

DECODE_THREADS = 8


class ImageFiles:
    """A lazy stand-in for a uint8 image tensor: the files, indexed by position like the tensor would be."""

    def __init__(self, paths: np.ndarray):
        self.paths = paths

    def __getitem__(self, index) -> "ImageFiles":
        return ImageFiles(self.paths[np.asarray(index)])

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Decoding:
    """How every image of a folder dataset becomes a tensor: its stored view (images.stored_view)."""

    image_size: int
    channels: int
    crop_fraction: float

    def read(self, path: str) -> torch.Tensor:
        return stored_view(read_image(path, self.channels), self.image_size, self.crop_fraction)


@dataclass
class FolderData:
    """What a folder dataset's loader returns: ImageData's fields with files in place of tensors."""

    train_x: ImageFiles  # the training images, then the given validation images (if any)
    train_y: torch.Tensor
    test_x: ImageFiles
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] | None  # None: computed from the training images
    std: tuple[float, ...] | None
    decoding: Decoding
    val_idx: torch.Tensor | None  # positions in train_x of a given validation split
    cache_root: str
    cache_name: str | None  # None: no decoded-tensor cache

    hflip_ok = True
    train_colors = test_colors = None  # no spurious attribute
    held_out_test_x = None  # data.holdout_classes takes in-memory datasets only

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.decoding.channels, self.decoding.image_size, self.decoding.image_size)

    def decoded_bytes(self) -> int:
        """The uint8 bytes of every image's stored view, all splits."""
        return (len(self.train_x) + len(self.test_x)) * int(np.prod(self.image_shape))

    def training_positions(self) -> np.ndarray:
        keep = np.ones(len(self.train_y), dtype=bool)
        if self.val_idx is not None:
            keep[self.val_idx.numpy()] = False
        return np.flatnonzero(keep)

    def decode(self) -> ImageData:
        """Every image decoded to its stored view (from the cache when it holds them); mean/std from the training
        images when not given."""
        def decode_all() -> dict[str, torch.Tensor]:
            return {"train_x": decode_files(self.train_x.paths, self.decoding), "train_y": self.train_y,
                    "test_x": decode_files(self.test_x.paths, self.decoding), "test_y": self.test_y}

        # The cache's name holds a digest of the listing: only its tensors' shapes and labels remain to check.
        facts = DatasetFacts(self.image_shape, tuple(torch.bincount(self.train_y, minlength=self.num_classes).tolist()))
        arrays = (cached_arrays(self.cache_root, self.cache_name, decode_all, True, facts) if self.cache_name
                  else decode_all())
        mean, std = self.mean, self.std
        if mean is None or std is None:
            mean, std = channel_statistics(arrays["train_x"][torch.from_numpy(self.training_positions())])
        return ImageData(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                         classes=list(self.classes), mean=mean, std=std, hflip_ok=True, val_idx=self.val_idx)


def decode_files(paths: np.ndarray, decoding: Decoding) -> torch.Tensor:
    """(N, C, S, S) uint8, decoded by a thread pool (the decoders release the GIL)."""
    out = torch.empty((len(paths), decoding.channels, decoding.image_size, decoding.image_size), dtype=torch.uint8)

    def put(i: int) -> None:
        out[i] = decoding.read(str(paths[i]))

    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        list(pool.map(put, range(len(paths))))
    return out


def channel_statistics(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel pixel mean and standard deviation on the [0, 1] scale, accumulated in float64 by chunks."""
    channels = images.shape[1]
    total, total_sq, count = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64), 0
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].double().div_(255).transpose(0, 1).reshape(channels, -1)
        total += part.sum(1)
        total_sq += part.square().sum(1)
        count += part.shape[1]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean.square()).clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


def refuse_download(name: str, download: bool, where: str) -> None:
    if download:
        raise UserError(f"data.download=true: regbench does not download {name}; {where}, then set "
                        f"data.download=false")


def folder_data(name: str, listing: FolderListing, root: str, image_size: int, channels: int | None,
                crop_fraction: float, mean, std, cache: bool) -> FolderData:
    check_decoding_params(image_size, channels, crop_fraction, mean, std, cache)
    channels = images_channels(listing, channels, every_file=True)
    decoding = Decoding(image_size, channels, float(crop_fraction))
    if mean is not None and len(mean) != channels:
        raise UserError(f"data.mean={list(mean)!r} has {len(mean)} values but the images have {channels} "
                        f"channel(s); give one value per channel, or null to compute them")
    splits = [listing.train] + ([listing.val] if listing.val is not None else [])
    train_y = torch.from_numpy(np.concatenate([s.labels for s in splits]))
    val_idx = (torch.arange(len(listing.train), len(listing.train) + len(listing.val))
               if listing.val is not None else None)
    cache_name = (f"{name}-{image_size}px-{channels}ch-crop{crop_fraction:g}-{listing.digest()}" if cache
                  else None)
    return FolderData(ImageFiles(np.concatenate([s.paths for s in splits])), train_y,
                      ImageFiles(listing.test.paths), torch.from_numpy(listing.test.labels), list(listing.classes),
                      tuple(mean) if mean is not None else None, tuple(std) if std is not None else None, decoding,
                      val_idx, root, cache_name)


@DATASETS.register("image_folder")
def load_image_folder(*, root: str, download: bool, split_seed: int, image_size: int, channels: int | None,
                      crop_fraction: float, mean: list[float] | None, std: list[float] | None,
                      test_fraction: float, cache: bool) -> FolderData:
    refuse_download("your own images", download, "point data.root at their folder")
    if root is None:
        raise UserError("data.root is not set: name the image folder, data=image_folder data.root=DIR")
    check_fraction("test_fraction", test_fraction)
    listing = list_image_folder(str(root), test_fraction, split_seed)
    return folder_data("image_folder", listing, root, image_size, channels, crop_fraction, mean, std, cache)


@DATASETS.register("tiny_imagenet")
def load_tiny_imagenet(*, root: str, download: bool, image_size: int, channels: int | None,
                       crop_fraction: float, mean: list[float] | None, std: list[float] | None,
                       cache: bool) -> FolderData:
    refuse_download("tiny_imagenet", download, "extract tiny-imagenet-200.zip (CS231n) into data.root")
    return folder_data("tiny_imagenet", list_tiny_imagenet(str(root)), root, image_size, channels, crop_fraction,
                       mean, std, cache)


@DATASETS.register("imagenet")
def load_imagenet(*, root: str, download: bool, image_size: int, channels: int | None,
                  crop_fraction: float, mean: list[float] | None, std: list[float] | None,
                  cache: bool) -> FolderData:
    refuse_download("imagenet", download, "extract ILSVRC-2012 (image-net.org, after sign-up) into data.root")
    return folder_data("imagenet", list_imagenet(str(root)), root, image_size, channels, crop_fraction, mean, std,
                       cache)
