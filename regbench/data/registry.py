"""The dataset registry (declared in regbench.specs.data): each entry loads one dataset as uint8 tensors (see
base.ImageData) and states its facts (see base.DatasetFacts) without loading it."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from regbench.data.base import DatasetFacts
from regbench.specs.data import DATASETS

# name -> facts(**loader params) -> DatasetFacts
DATASET_FACTS: dict[str, Callable[..., DatasetFacts]] = {}


def register_dataset(name: str, facts: Callable[..., DatasetFacts]) -> Callable:
    """Register a loader together with its facts, a function of the loader's own parameters."""
    def add(loader: Callable) -> Callable:
        DATASET_FACTS[name] = facts
        return DATASETS.register(name)(loader)
    return add


def dataset_facts(name: str, params: Mapping[str, Any], root: str | None = None, split_seed: int = 0) -> DatasetFacts:
    """The facts of dataset `name` for its loader `params`; parameters left out take the loader's defaults. The
    folder datasets read their listing under `root` (a test split drawn with `split_seed`)."""
    params = DATASETS.with_defaults(name, params)
    return DATASET_FACTS[name](**{**params, "root": root, "split_seed": split_seed})


def fixed_facts(facts: DatasetFacts) -> Callable[..., DatasetFacts]:
    """Facts of a dataset whose loader parameters do not change its images (the file-based ones)."""
    return lambda **_: facts
