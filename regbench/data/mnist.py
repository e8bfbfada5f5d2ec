"""MNIST and Fashion-MNIST from torchvision's on-disk layout (<root>/<folder>/raw/*-ubyte), read as idx files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from regbench.data.base import ImageData, check_label_range
from regbench.data.cache import cached_arrays
from regbench.data.download import fetch
from regbench.data.facts import FASHION_FACTS, MNIST_FACTS, DatasetFacts
from regbench.data.files import MNIST_FILES, missing_idx_files, mnist_raw_dir
from regbench.errors import UserError
from regbench.specs.data import DATASETS

# Magic numbers of the idx format: 0x0803 = uint8 with 3 dims, 0x0801 = uint8 with 1 dim.
_IDX_MAGIC = {3: 2051, 1: 2049}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def read_idx(path: Path, ndim: int) -> np.ndarray:
    raw = path.read_bytes()
    header = 4 * (1 + ndim)
    magic = int.from_bytes(raw[:4], "big")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if magic != _IDX_MAGIC[ndim] or len(raw) != header + int(np.prod(dims)):
        raise UserError(f"{path} is not a valid idx file (bad header or size); delete it and re-fetch the data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_dataset(root: str, download: bool, folder: str, torchvision_cls,
                     facts: DatasetFacts) -> dict[str, np.ndarray]:
    raw = mnist_raw_dir(root, folder)
    if download and missing_idx_files(root, folder):
        def download_both() -> None:
            torchvision_cls(root=str(Path(root).expanduser()), train=True, download=True)
            torchvision_cls(root=str(Path(root).expanduser()), train=False, download=True)

        fetch(folder, raw, download_both)
    problem = missing_idx_files(root, folder)
    if problem:
        raise UserError(problem)
    arrays = {key: read_idx(raw / name, 3 if key.endswith("x") else 1) for key, name in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
        images_file, labels_file = raw / MNIST_FILES[f"{split}_x"], raw / MNIST_FILES[f"{split}_y"]
        if images.shape[1:] != facts.image_shape[1:]:
            raise UserError(f"{images_file} holds {'x'.join(map(str, images.shape[1:]))} images; {folder}'s are "
                            f"{'x'.join(map(str, facts.image_shape[1:]))}: re-fetch the {folder} files")
        if len(images) != len(labels):
            raise UserError(f"{labels_file} holds {len(labels)} labels but {images_file} holds {len(images)} images; "
                            f"re-fetch the {folder} files")
        check_label_range(labels, 0, facts.num_classes - 1, str(labels_file))
    return arrays


def load_idx_tensors(root: str, download: bool, folder: str, torchvision_cls, cache: bool,
                     facts: DatasetFacts) -> dict[str, torch.Tensor]:
    def decode() -> dict[str, torch.Tensor]:
        arrays = load_idx_dataset(root, download, folder, torchvision_cls, facts)
        images = {k: torch.from_numpy(arrays[k].copy()).unsqueeze(1) for k in ("train_x", "test_x")}
        labels = {k: torch.from_numpy(arrays[k].astype(np.int64)) for k in ("train_y", "test_y")}
        return {**images, **labels}

    return cached_arrays(root, folder, decode, cache, facts)


@DATASETS.register("mnist")
def load_mnist(*, root: str, download: bool, split_seed: int, cache: bool) -> ImageData:
    from torchvision.datasets import MNIST

    t = load_idx_tensors(root, download, "MNIST", MNIST, cache, MNIST_FACTS)
    return ImageData(t["train_x"], t["train_y"], t["test_x"], t["test_y"],
                     classes=[str(d) for d in range(10)], mean=(0.1307,), std=(0.3081,), hflip_ok=False)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(*, root: str, download: bool, split_seed: int, cache: bool) -> ImageData:
    from torchvision.datasets import FashionMNIST

    t = load_idx_tensors(root, download, "FashionMNIST", FashionMNIST, cache, FASHION_FACTS)
    # Clothes keep their class when mirrored, so the usual flip augmentation applies.
    return ImageData(t["train_x"], t["train_y"], t["test_x"], t["test_y"], classes=FASHION_CLASSES,
                     mean=(0.2860,), std=(0.3530,), hflip_ok=True)
