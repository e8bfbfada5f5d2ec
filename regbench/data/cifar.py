"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) read straight from their python pickle batches in torchvision's layout."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from regbench.data.base import ImageData, check_label_range
from regbench.data.cache import cached_arrays
from regbench.data.download import fetch
from regbench.data.facts import CIFAR10_FACTS, CIFAR100_FACTS
from regbench.data.files import CIFAR10_FILES, CIFAR10_FOLDER, CIFAR100_FILES, CIFAR100_FOLDER, missing_cifar_files
from regbench.errors import UserError
from regbench.specs.data import DATASETS

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
]


def read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: b'data' is (N, 3072) uint8 in channel-major order, `label_key` a list of N ints."""
    try:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        # Python 2 pickles (the originals) give bytes keys here; a Python 3 re-pickle may have str keys.
        batch = {k.encode() if isinstance(k, str) else k: v for k, v in batch.items()}
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{path} is not a valid CIFAR python batch ({type(err).__name__}); delete it and "
                        f"re-fetch the data") from None
    if len(images) != len(labels):
        raise UserError(f"{path} is not a valid CIFAR python batch: {len(images)} images but {len(labels)} labels")
    check_label_range(labels, 0, num_classes - 1, str(path))
    return images, labels


def read_cifar(root: str, download: bool, folder: str, files: dict[str, list[str]], label_key: bytes,
               num_classes: int, torchvision_cls) -> dict[str, torch.Tensor]:
    base = Path(root).expanduser() / folder
    if download and missing_cifar_files(root, folder, files):
        def download_both() -> None:
            torchvision_cls(root=str(Path(root).expanduser()), train=True, download=True)
            torchvision_cls(root=str(Path(root).expanduser()), train=False, download=True)

        fetch(folder, base, download_both)
    problem = missing_cifar_files(root, folder, files)
    if problem:
        raise UserError(problem)
    out = {}
    for split in ("train", "test"):
        parts = [read_cifar_batch(base / n, label_key, num_classes) for n in files[split]]
        out[f"{split}_x"] = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        out[f"{split}_y"] = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return out


@DATASETS.register("cifar10")
def load_cifar10(*, root: str, download: bool, split_seed: int, cache: bool) -> ImageData:
    from torchvision.datasets import CIFAR10

    t = cached_arrays(root, "cifar10", lambda: read_cifar(root, download, CIFAR10_FOLDER, CIFAR10_FILES, b"labels",
                                                          CIFAR10_FACTS.num_classes, CIFAR10), cache, CIFAR10_FACTS)
    return ImageData(t["train_x"], t["train_y"], t["test_x"], t["test_y"], classes=CIFAR10_CLASSES,
                     mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), hflip_ok=True)


@DATASETS.register("cifar100")
def load_cifar100(*, root: str, download: bool, split_seed: int, cache: bool) -> ImageData:
    from torchvision.datasets import CIFAR100

    t = cached_arrays(root, "cifar100", lambda: read_cifar(root, download, CIFAR100_FOLDER, CIFAR100_FILES,
                                                           b"fine_labels", CIFAR100_FACTS.num_classes, CIFAR100),
                      cache, CIFAR100_FACTS)
    return ImageData(t["train_x"], t["train_y"], t["test_x"], t["test_y"], classes=CIFAR100_CLASSES,
                     mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), hflip_ok=True)
