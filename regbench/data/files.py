"""Where the file-based datasets' raw files lie under data.root, and the one line that names the first one missing.
No torch: the loaders say it when they look for their files, and the config checks say it before torch loads."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from regbench.data.folder import CACHE_DIR
from regbench.errors import UserError

MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = {"train": ["train"], "test": ["test"]}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def cache_path(root: str, name: str) -> Path:
    """The decoded tensors of dataset `name` (see cache.py)."""
    return Path(root).expanduser() / CACHE_DIR / f"{name}.uint8.pt"


def mnist_raw_dir(root: str, folder: str) -> Path:
    return Path(root).expanduser() / folder / "raw"


def first_missing(folder: Path, names) -> Path | None:
    return next((folder / name for name in names if not (folder / name).is_file()), None)


def missing_idx_files(root: str, folder: str) -> str | None:
    """MNIST and Fashion-MNIST in torchvision's layout: ROOT/<folder>/raw/*-ubyte."""
    raw = mnist_raw_dir(root, folder)
    missing = first_missing(raw, MNIST_FILES.values())
    return None if missing is None else (
        f"{folder} files not found: {missing} is missing; put the four {folder} idx files in {raw} "
        f"(data.root={root!r}) or set data.download=true to fetch them")


def missing_cifar_files(root: str, folder: str, files: Mapping[str, list[str]]) -> str | None:
    base = Path(root).expanduser() / folder
    missing = first_missing(base, files["train"] + files["test"])
    return None if missing is None else (
        f"{folder} files not found: {missing} is missing; put the CIFAR python batches in {base} "
        f"(data.root={root!r}) or set data.download=true to fetch them")


def missing_svhn_files(root: str) -> str | None:
    missing = first_missing(Path(root).expanduser(), SVHN_FILES.values())
    return None if missing is None else (
        f"SVHN files not found: {missing} is missing; put train_32x32.mat and test_32x32.mat in "
        f"{Path(root).expanduser()} (data.root={root!r}) or set data.download=true to fetch them")


# dataset -> (its cache's name, root -> what is missing or None). colored_mnist colours MNIST's files.
RAW_FILES: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "cifar10": ("cifar10", lambda root: missing_cifar_files(root, CIFAR10_FOLDER, CIFAR10_FILES)),
    "cifar100": ("cifar100", lambda root: missing_cifar_files(root, CIFAR100_FOLDER, CIFAR100_FILES)),
    "colored_mnist": ("MNIST", lambda root: missing_idx_files(root, "MNIST")),
    "fashion_mnist": ("FashionMNIST", lambda root: missing_idx_files(root, "FashionMNIST")),
    "mnist": ("MNIST", lambda root: missing_idx_files(root, "MNIST")),
    "svhn": ("svhn", missing_svhn_files),
}


def check_data_files(data: Mapping[str, Any]) -> None:
    """A file-based dataset with raw files missing, no cache file to read instead and no download asked for is
    refused in the line its loader would give (a cache file present is checked as the data loads)."""
    if data["name"] not in RAW_FILES:
        return
    if not isinstance(data["root"], str):
        raise UserError(f"data.root={data['root']!r} is invalid: data={data['name']} reads its files under it; set "
                        f"data.root=DIR")
    if data["download"]:
        return
    cache_name, missing = RAW_FILES[data["name"]]
    if data["cache"] and cache_path(data["root"], cache_name).is_file():
        return
    problem = missing(data["root"])
    if problem is not None:
        raise UserError(problem)
