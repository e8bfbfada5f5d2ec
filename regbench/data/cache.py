"""One file of decoded uint8 tensors per dataset under data.root, so later runs skip decoding (as airbench does)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import torch

CACHE_DIR = "regbench_cache"
CACHE_KEYS = {"train_x", "train_y", "test_x", "test_y"}


def cache_path(root: str, name: str) -> Path:
    return Path(root).expanduser() / CACHE_DIR / f"{name}.uint8.pt"


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: decode the raw files again and rewrite it
        return None
    if not (isinstance(arrays, dict) and set(arrays) == CACHE_KEYS
            and all(isinstance(v, torch.Tensor) for v in arrays.values())):
        return None  # written by something else: decode again
    if len(arrays["train_x"]) != len(arrays["train_y"]) or len(arrays["test_x"]) != len(arrays["test_y"]):
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, torch.Tensor]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel sweep jobs never see half a file
        torch.save(arrays, tmp)
        os.replace(tmp, path)
    except OSError as err:  # a read-only data folder still trains, just without the speed-up
        warnings.warn(f"could not write the data cache {path}: {err}", stacklevel=2)


def cached_arrays(root: str, name: str, decode: Callable[[], dict[str, torch.Tensor]], use_cache: bool,
                  ) -> dict[str, torch.Tensor]:
    """The decoded tensors from the cache file when it is valid, else from `decode()` (then cached)."""
    path = cache_path(root, name)
    if use_cache and path.is_file():
        arrays = _read_cache(path)
        if arrays is not None:
            return arrays
    arrays = decode()
    if use_cache:
        _write_cache(path, arrays)
    return arrays
