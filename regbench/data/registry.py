"""The dataset registry: each entry loads one dataset as uint8 tensors (see base.ImageData) and declares the
DataSpec of its images, which the config checks use before anything is loaded."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from regbench.data.base import DataSpec
from regbench.registry import Registry

DATASETS = Registry("dataset", "data", context=("root", "download", "split_seed"))
# name -> the DataSpec for the loader's config parameters.
DATASET_SPECS: dict[str, Callable[..., DataSpec]] = {}


def register_dataset(name: str, spec: DataSpec | Callable[..., DataSpec]) -> Callable:
    """Register a loader with its spec: a fixed DataSpec, or a function of the loader's parameters."""
    def add(loader: Callable) -> Callable:
        DATASET_SPECS[name] = spec if callable(spec) else (lambda **_: spec)
        return DATASETS.register(name)(loader)
    return add


def dataset_spec(name: str, loader_params: Mapping[str, Any]) -> DataSpec:
    """The spec of dataset `name` for its config parameters (unknown parameters refused, naming data.KEY)."""
    DATASETS.check_parameters(name, loader_params)
    return DATASET_SPECS[name](**loader_params)
