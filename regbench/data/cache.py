"""One file of decoded uint8 tensors per dataset under data.root, so later runs skip decoding (as airbench does)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from regbench.data.facts import DatasetFacts
from regbench.data.files import cache_path
from regbench.errors import UserError

CACHE_KEYS = {"train_x", "train_y", "test_x", "test_y"}


def _split_problem(images: Any, labels: Any, split: str, facts: DatasetFacts) -> str | None:
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4
            and tuple(images.shape[1:]) == facts.image_shape):
        found = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        return f"{split}_x is {found}; expected (N, {', '.join(map(str, facts.image_shape))}) torch.uint8"
    if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.ndim == 1):
        found = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        return f"{split}_y is {found}; expected (N,) torch.int64"
    if len(images) != len(labels):
        return f"{split}_x holds {len(images)} images but {split}_y {len(labels)} labels"
    if len(labels) and (labels.min() < 0 or labels.max() >= facts.num_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        return f"{split}_y holds label {bad.item()}; allowed: 0..{facts.num_classes - 1}"
    return None


def _read_cache(path: Path, facts: DatasetFacts) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """(the tensors, None) when the file is a valid cache for the dataset's `facts`, else (None, what is wrong
    with it)."""
    try:
        arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (a truncated or foreign file: any reason means unreadable)
        return None, f"unreadable: {type(err).__name__}"
    if not (isinstance(arrays, dict) and set(arrays) == CACHE_KEYS):
        keys = sorted(map(str, arrays)) if isinstance(arrays, dict) else type(arrays).__name__
        return None, f"holds {keys}; expected {sorted(CACHE_KEYS)}"
    for split in ("train", "test"):
        problem = _split_problem(arrays[f"{split}_x"], arrays[f"{split}_y"], split, facts)
        if problem:
            return None, problem
    return arrays, None


def _write_cache(path: Path, arrays: dict[str, torch.Tensor]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel sweep jobs never see half a file
        torch.save(arrays, tmp)
        os.replace(tmp, path)
    except OSError as err:  # a read-only data folder still trains, just without the speed-up
        warnings.warn(f"could not write the data cache {path}: {err}", stacklevel=2)


def cached_arrays(root: str, name: str, decode: Callable[[], dict[str, torch.Tensor]], use_cache: bool,
                  facts: DatasetFacts) -> dict[str, torch.Tensor]:
    """The decoded tensors from the cache file when it is valid for the dataset's `facts` (image shape, class
    count), else from `decode()` (then cached).
    A corrupt cache is rebuilt from the raw files, with a warning; when they cannot rebuild it, one line says
    what is wrong with both."""
    path = cache_path(root, name)
    if not (use_cache and path.is_file()):
        arrays = decode()
        if use_cache:
            _write_cache(path, arrays)
        return arrays
    arrays, problem = _read_cache(path, facts)
    if problem is None:
        return arrays
    try:
        arrays = decode()
    except UserError as err:
        raise UserError(f"the data cache {path} is corrupt ({problem}) and rebuilding it from the raw files "
                        f"failed: {err}") from None
    warnings.warn(f"the data cache {path} was corrupt ({problem}); rebuilt it from the raw files", stacklevel=2)
    _write_cache(path, arrays)
    return arrays
