"""Checks of one composed run config that need no data and no run directory: every name known, every value in
range, every component checked against the run's shape and the model built on the meta device."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch.nn as nn

from regbench.backbones import dry_build_backbone
from regbench.config.inactivity import inactive_components
from regbench.config.trainer import check_trainer_config
from regbench.data import DATASETS
from regbench.data.batches import check_crop_padding
from regbench.data.module import check_common, loader_params
from regbench.data.registry import dataset_facts
from regbench.data.shape import planned_run_shape
from regbench.devices import local_world_size, training_accelerator, training_memory
from regbench.errors import ParamError, UserError, check
from regbench.loggers import check_logger_config
from regbench.optim import build_optimizer, build_schedule
from regbench.regularizers import MemoryBudget, build_regularizers, check_regularizers_memory
from regbench.runshape import RunShape

# What a hyperparameter search may optimize: validation metrics of metrics.json.
OPTIMIZABLE_METRICS = ("best_val_acc", "val_acc", "val_nll", "val_ece")
# Seeds reach numpy's legacy seeding (Lightning's seed_everything), which takes 32-bit unsigned integers.
SEED_LIMIT = 2 ** 32

def validate_config(cfg: dict[str, Any], on_this_machine: bool = True) -> list[dict[str, str]]:
    """Every name known and every value in range, for the parts that can be checked without loading data, and
    every component checked against the run's shape (from the dataset's facts) and the model (built on the meta
    device). `on_this_machine`: the job trains here, so the accelerator and the device memory must be this
    machine's (false for SLURM jobs, which check again on their node). Returns the components that would be
    inactive (metrics.json's `inactive`)."""
    check_seeds(cfg)
    check(isinstance(cfg["exp_name"], str) and cfg["exp_name"] != "", "exp_name", cfg["exp_name"],
          "must be a non-empty string")
    DATASETS.get(cfg["data"]["name"])
    check_trainer_config(cfg["trainer"])
    if on_this_machine:
        training_accelerator(cfg["trainer"])
    shape = checked_run_shape(cfg)
    regularizers = build_regularizers(cfg["regularizer"], cfg["seed"], backbone=cfg["backbone"],
                                      label_noise=cfg["data"]["noise"])
    inactive = inactive_components(cfg, shape, regularizers)
    num_classes = dataset_facts(cfg["data"]["name"], loader_params(cfg["data"]), cfg["data"]["root"],
                                cfg["data"]["split_seed"]).num_classes
    model = dry_build_backbone(cfg["backbone"], cfg["norm"], shape.image_shape, num_classes, shape)
    optimizer = build_optimizer(cfg["optim"], nn.Linear(1, 1))
    build_schedule(cfg["sched"], optimizer, steps_per_epoch=shape.steps_per_epoch, total_steps=shape.total_steps)
    memory = (lambda: training_memory(cfg["trainer"])) if on_this_machine else None  # asked only where needed
    check_regularizers_memory(regularizers, MemoryBudget(shape.batch_size, model.num_features, num_classes, memory))
    metric = cfg.get("optimized_metric")
    check(metric is None or metric in OPTIMIZABLE_METRICS, "optimized_metric", metric,
          f"allowed: {', '.join(OPTIMIZABLE_METRICS)} (tune on validation metrics, never on the test set)")
    try:
        check_logger_config(cfg["logger"])
    except ParamError as err:
        raise UserError(str(err.at("logger"))) from None
    return inactive


def checked_run_shape(cfg: dict[str, Any]) -> RunShape:
    """The run's shape from the data config and the dataset's facts; a batch larger than the training split
    (per device) and crop padding that reflect padding cannot give the images are refused."""
    world = local_world_size(cfg["trainer"])
    try:
        check_common(cfg["data"])
        shape = planned_run_shape(cfg["data"], cfg["trainer"]["max_epochs"], world)
        per_device = shape.train_images // world
        check(shape.steps_per_epoch >= 1, "batch_size", shape.batch_size,
              f"must be at most the {per_device} training images (after the validation split"
              f"{', per device' if world > 1 else ''}) so that an epoch has a full batch")
        check_crop_padding(cfg["data"]["augment"]["crop_padding"], shape.image_shape)
    except ParamError as err:
        raise UserError(str(err.at("data"))) from None
    return shape


def seed_keys(cfg: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every random seed of a config: the keys named `seed` or ending in `_seed`, at any depth; shallower ones
    first, so a bad `seed` is named rather than the nested seeds that copy it (data.noise.seed: ${seed})."""
    for key, value in cfg.items():
        if not isinstance(value, Mapping) and (key == "seed" or str(key).endswith("_seed")):
            yield f"{prefix}{key}", value
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            yield from seed_keys(value, f"{prefix}{key}.")


def check_seeds(cfg: Mapping[str, Any], prefix: str = "", optional: bool = False) -> None:
    """`optional`: a null seed is allowed (Optuna's sampler then draws one)."""
    for key, seed in seed_keys(cfg, prefix):
        if not ((optional and seed is None)
                or (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < SEED_LIMIT)):
            raise UserError(f"{key}={seed!r} is invalid: a seed must be an integer from 0 to {SEED_LIMIT - 1} "
                            f"(numpy's 32-bit seeds)")
