"""Checks on a composed config that need no data: they run before Hydra creates a run directory."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch.nn as nn
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from regbench.backbones import norm_for_backbone
from regbench.data import DATASETS
from regbench.data.module import check_common
from regbench.data.shape import planned_run_shape
from regbench.distributed import local_world_size
from regbench.errors import ParamError, UserError, check, one_line
from regbench.inactivity import inactive_components
from regbench.loggers import LOGGERS, resolve_wandb_mode
from regbench.optim import build_optimizer, build_schedule
from regbench.regularizers import build_regularizers
from regbench.describe import config_hash
from regbench.rundir import inspect_run_dir
from regbench.runshape import RunShape
from regbench.slurm import LAUNCHER_TARGET, check_slurm_launcher
from regbench.trainer import check_trainer_config

CONFIG_MODULE = "regbench.conf"
GROUPS = ("data", "backbone", "norm", "regularizer", "optim", "sched", "trainer", "logger", "exp", "sweep",
          "hparams_search")
# Hydra's own groups a user selects on the command line, checked the same way.
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
# What a hyperparameter search may optimize: validation metrics of metrics.json.
OPTIMIZABLE_METRICS = ("best_val_acc", "val_acc", "val_nll", "val_ece")


def group_options(group: str) -> list[str]:
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def _selected_names(value: Any) -> Iterable[str]:
    """Every option name an override selects: a name, a list of names, a sweep of either."""
    if isinstance(value, ChoiceSweep):
        value = value.list
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _selected_names(item)
    elif value is not None:
        yield str(value)


def check_group_choices(overrides: list[Override]) -> None:
    for override in overrides:
        group = override.key_or_group
        if group not in GROUPS + HYDRA_GROUPS or override.is_delete():
            continue
        allowed = group_options(group)
        for name in _selected_names(override.value()):
            if name not in allowed:
                raise UserError(f"{override.get_key_element()}={name!r} is not a known {group}; "
                                f"allowed: {', '.join(allowed)}")


def validate_config(cfg: dict[str, Any]) -> list[dict[str, str]]:
    """Every name known and every value in range, for the parts that can be checked without data, and every
    component checked against the run's shape (from the dataset's facts). Returns the components that would be
    inactive (metrics.json's `inactive`)."""
    check_seed(cfg["seed"])
    check(isinstance(cfg["exp_name"], str) and cfg["exp_name"] != "", "exp_name", cfg["exp_name"],
          "must be a non-empty string")
    DATASETS.get(cfg["data"]["name"])
    check_trainer_config(cfg["trainer"])
    shape = checked_run_shape(cfg)
    regularizers = build_regularizers(cfg["regularizer"], cfg["seed"], backbone=cfg["backbone"],
                                      label_noise=cfg["data"]["noise"])
    inactive = inactive_components(cfg, shape, regularizers)
    norm_for_backbone(cfg["backbone"], cfg["norm"], shape)
    optimizer = build_optimizer(cfg["optim"], nn.Linear(1, 1))
    build_schedule(cfg["sched"], optimizer, steps_per_epoch=shape.steps_per_epoch, total_steps=shape.total_steps)
    metric = cfg.get("optimized_metric")
    check(metric is None or metric in OPTIMIZABLE_METRICS, "optimized_metric", metric,
          f"allowed: {', '.join(OPTIMIZABLE_METRICS)} (tune on validation metrics, never on the test set)")
    LOGGERS.get(cfg["logger"]["name"])
    if cfg["logger"]["name"] == "wandb":
        try:
            resolve_wandb_mode(cfg["logger"]["wandb"]["mode"])
        except ParamError as err:
            raise UserError(str(err.at("logger"))) from None
    return inactive


def checked_run_shape(cfg: dict[str, Any]) -> RunShape:
    """The run's shape from the data config and the dataset's facts; a batch larger than the training split
    (per device) is refused."""
    world = local_world_size(cfg["trainer"])
    try:
        check_common(cfg["data"])
        shape = planned_run_shape(cfg["data"], cfg["trainer"]["max_epochs"], world)
        per_device = shape.train_images // world
        check(shape.steps_per_epoch >= 1, "batch_size", shape.batch_size,
              f"must be at most the {per_device} training images (after the validation split"
              f"{', per device' if world > 1 else ''}) so that an epoch has a full batch")
    except ParamError as err:
        raise UserError(str(err.at("data"))) from None
    return shape


def check_seed(seed: Any) -> None:
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise UserError(f"seed={seed!r} is invalid: must be an integer >= 0")


def compose_checked(overrides: list[str]) -> tuple[dict[str, Any], Any]:
    """The resolved run config (without `hydra`) and the hydra config for `overrides`, as one-line errors."""
    try:
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            hydra_cfg = cfg.pop("hydra")
            cfg.run_dir = "."  # the hydra: resolver needs a live run; the real one is checked in the job
        return OmegaConf.to_container(cfg, resolve=True), hydra_cfg
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(one_line(err)) from None


def sweep_jobs(overrides: list[str], parsed: list[Override]) -> list[list[str]] | None:
    """Each job's overrides, expanded the way Hydra's basic sweeper will (None for other sweepers, e.g. Optuna,
    whose jobs are only known while they run)."""
    _, hydra_cfg = compose_checked([o.input_line for o in parsed if not o.is_sweep_override()])
    if hydra_cfg.sweeper._target_ != "hydra._internal.core_plugins.basic_sweeper.BasicSweeper":
        return None
    params = [f"{key}={value}" for key, value in (hydra_cfg.sweeper.params or {}).items()]
    try:
        expanded = OverridesParser.create().parse_overrides([*params, *overrides])
    except HydraException as err:
        raise UserError(f"cannot parse hydra.sweeper.params: {one_line(err)}") from None
    return [job for batch in BasicSweeper.split_arguments(expanded, None) for job in batch]


def check_launcher(hydra_cfg: Any, resolved: dict[str, Any]) -> None:
    if hydra_cfg.launcher._target_ == LAUNCHER_TARGET:
        check_slurm_launcher(hydra_cfg.launcher, resolved["trainer"])


def preflight(overrides: list[str], multirun: bool) -> list[tuple[list[str], list[dict[str, str]]]]:
    """Compose and check the config the way Hydra will, turning every mistake into one UserError line; for a
    sweep, every job's config, so a typo fails before any job starts. Returns each checked job's overrides with
    its inactive components (see validate_config)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse the overrides: {one_line(err)}") from None
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        check_group_choices(parsed)
        if multirun:
            jobs = sweep_jobs(overrides, parsed) or [[o.input_line for o in parsed if not o.is_sweep_override()]]
            checked = []
            for job in jobs:
                try:
                    resolved, hydra_cfg = compose_checked(job)
                    checked.append((job, validate_config(resolved)))
                    check_launcher(hydra_cfg, resolved)
                except UserError as err:
                    raise UserError(f"{err} (in the sweep job {' '.join(job)})") from None
            return checked
        resolved, hydra_cfg = compose_checked(overrides)
    inactive = validate_config(resolved)
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a preset's sweep, e.g. +hparams_search=...
        check_launcher(hydra_cfg, resolved)
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        # A directory holding this very run is fine (skip or resume); one holding another run is refused.
        inspect_run_dir(Path(hydra_cfg.run.dir), config_hash(resolved))
    return [(overrides, inactive)]
