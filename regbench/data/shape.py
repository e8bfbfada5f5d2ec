"""A run's shape from its data config and the dataset's facts (no data loaded), or from a loaded datamodule."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.data.imbalance import profile_counts
from regbench.data.module import ImageDataModule, loader_params
from regbench.data.registry import dataset_facts
from regbench.data.split import kept_counts
from regbench.runshape import RunShape


def training_class_counts(cfg: Mapping[str, Any]) -> tuple[tuple[int, int, int], list[int]]:
    """The image shape and the per-class sizes of the training split the run will see: the loader's training
    set minus the validation split (none when the dataset gives its own), subsampled to the long-tailed profile when
    `imbalance` asks for it."""
    facts = dataset_facts(cfg["name"], loader_params(cfg), cfg["root"], cfg["split_seed"])
    counts = list(facts.train_class_counts if facts.val_class_counts is not None
                  else kept_counts(facts.train_class_counts, cfg["val_fraction"]))
    if cfg["imbalance"]["type"] != "none":
        counts = profile_counts(cfg["imbalance"], counts)
    return facts.image_shape, counts


def planned_run_shape(cfg: Mapping[str, Any], max_epochs: int, world_size: int) -> RunShape:
    image_shape, counts = training_class_counts(cfg)
    return RunShape(image_shape, sum(counts), cfg["batch_size"], world_size, max_epochs)


def loaded_run_shape(datamodule: ImageDataModule, max_epochs: int, world_size: int) -> RunShape:
    return RunShape(tuple(datamodule.image_shape), datamodule.split_size("train"), datamodule.batch_size, world_size,
                    max_epochs)
