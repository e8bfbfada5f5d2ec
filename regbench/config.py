"""Checks on a composed config that need no data: they run before Hydra creates a run directory."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

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

from regbench.backbones import dry_build_backbone
from regbench.config_keys import check_override_keys, is_key_override
from regbench.data import DATASETS
from regbench.data.batches import check_crop_padding
from regbench.data.module import check_common, loader_params
from regbench.data.registry import dataset_facts
from regbench.data.shape import planned_run_shape
from regbench.devices import training_accelerator, training_memory
from regbench.distributed import local_world_size
from regbench.errors import ParamError, UserError, check, one_line
from regbench.inactivity import inactive_components
from regbench.loggers import LOGGERS, resolve_wandb_mode
from regbench.optim import build_optimizer, build_schedule
from regbench.regularizers import MemoryBudget, build_regularizers, check_regularizers_memory
from regbench.describe import config_hash
from regbench.rundir import check_output_dir, inspect_run_dir
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
# Seeds reach numpy's legacy seeding (Lightning's seed_everything), which takes 32-bit unsigned integers.
SEED_LIMIT = 2 ** 32
# Launchers whose jobs run on other machines (SLURM nodes): their accelerators and memory are checked there.
REMOTE_LAUNCHERS = (LAUNCHER_TARGET, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")


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
    num_classes = dataset_facts(cfg["data"]["name"], loader_params(cfg["data"])).num_classes
    model = dry_build_backbone(cfg["backbone"], cfg["norm"], shape.image_shape, num_classes, shape)
    optimizer = build_optimizer(cfg["optim"], nn.Linear(1, 1))
    build_schedule(cfg["sched"], optimizer, steps_per_epoch=shape.steps_per_epoch, total_steps=shape.total_steps)
    memory = (lambda: training_memory(cfg["trainer"])) if on_this_machine else None  # asked only where needed
    check_regularizers_memory(regularizers, MemoryBudget(shape.batch_size, model.num_features, num_classes, memory))
    metric = cfg.get("optimized_metric")
    check(metric is None or metric in OPTIMIZABLE_METRICS, "optimized_metric", metric,
          f"allowed: {', '.join(OPTIMIZABLE_METRICS)} (tune on validation metrics, never on the test set)")
    LOGGERS.check_parameters(cfg["logger"]["name"], [k for k in cfg["logger"] if k != "name"])
    if cfg["logger"]["name"] == "wandb":
        try:
            resolve_wandb_mode(cfg["logger"]["wandb"]["mode"])
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


@functools.cache  # regbench's config groups never change within a process, and asking Hydra is slow
def is_group(key: str) -> bool:
    return bool(group_options(key))


def base_config(parsed: list[Override], bases: dict[tuple[str, ...], dict[str, Any]]) -> dict[str, Any]:
    """The config of the group selections alone (no key overrides): every key the selected options' YAML
    defines. `bases` caches it per selection, as the jobs of a sweep share a few."""
    selections = tuple(o.input_line for o in parsed if is_group(o.key_or_group) and not o.is_delete())
    if selections not in bases:
        try:
            bases[selections] = OmegaConf.to_container(compose("config", overrides=list(selections)), resolve=False)
        except (HydraException, OmegaConfBaseException) as err:
            raise UserError(one_line(err)) from None
    return bases[selections]


def compose_job(job: list[str], bases: dict[tuple[str, ...], dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """compose_checked for one job, whose overrides may add or delete only keys that regbench reads and keep the
    kind of a group's mappings and lists; a key that Hydra cannot override is reported with the keys that exist.
    (A top-level key, e.g. seed=1, needs no base config: the run config's own checks see its kind.)"""
    parsed = OverridesParser.create().parse_overrides(job)
    keys = [o for o in parsed if is_key_override(o, is_group)]
    if any(o.is_add() or o.is_force_add() or o.is_delete() or "." in o.key_or_group for o in keys):
        check_override_keys(keys, base_config(parsed, bases))
    try:
        return compose_checked(job)
    except UserError:
        check_override_keys(keys, base_config(parsed, bases))
        raise


def sweep_jobs(overrides: list[str], parsed: list[Override],
               bases: dict[tuple[str, ...], dict[str, Any]] | None = None) -> list[list[str]] | None:
    """Each job's overrides, expanded the way Hydra's basic sweeper will (None for other sweepers, e.g. Optuna,
    whose jobs are only known while they run)."""
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    _, hydra_cfg = compose_job(fixed, {} if bases is None else bases)
    if hydra_cfg.sweeper._target_ != "hydra._internal.core_plugins.basic_sweeper.BasicSweeper":
        return None
    params = [f"{key}={value}" for key, value in (hydra_cfg.sweeper.params or {}).items()]
    try:
        expanded = OverridesParser.create().parse_overrides([*params, *overrides])
    except HydraException as err:
        raise UserError(f"cannot parse hydra.sweeper.params: {one_line(err)}") from None
    return [job for batch in BasicSweeper.split_arguments(expanded, None) for job in batch]


def check_sweep(hydra_cfg: Any, resolved: dict[str, Any]) -> None:
    """What a sweep's launcher and sweeper need beyond the run config."""
    if hydra_cfg.launcher._target_ == LAUNCHER_TARGET:
        check_slurm_launcher(hydra_cfg.launcher, resolved["trainer"])
    sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=True)
    sweeper.pop("params", None)  # the grid's values, e.g. seed: 0,1,2, are checked as each job's config
    check_seeds(sweeper, "hydra.sweeper.", optional=True)


def preflight(overrides: list[str], multirun: bool,
              writes: bool = True) -> list[tuple[list[str], list[dict[str, str]]]]:
    """Compose and check the config the way Hydra will, turning every mistake into one UserError line; for a
    sweep, every job's config, so a typo fails before any job starts. `writes`: the command will write runs (not
    only print the config), so the output directory must be usable too. Returns each checked job's overrides
    with its inactive components (see validate_config)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse the overrides: {one_line(err)}") from None
    bases: dict[tuple[str, ...], dict[str, Any]] = {}
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        check_group_choices(parsed)
        jobs = sweep_jobs(overrides, parsed, bases) if multirun else [overrides]
        checked = []
        for job in jobs or [[o.input_line for o in parsed if not o.is_sweep_override()]]:
            try:
                resolved, hydra_cfg = compose_job(job, bases)
                sweeping = multirun or hydra_cfg.mode == RunMode.MULTIRUN  # a preset may sweep: +hparams_search
                checked.append((job, validate_config(resolved, on_this_machine=not (
                    sweeping and hydra_cfg.launcher._target_ in REMOTE_LAUNCHERS))))
                if sweeping:
                    check_sweep(hydra_cfg, resolved)
            except UserError as err:
                raise UserError(f"{err} (in the sweep job {' '.join(job)})" if multirun else str(err)) from None
    if not writes:
        return checked
    if sweeping:
        check_output_dir(Path(hydra_cfg.sweep.dir), "hydra.sweep.dir")
        return checked
    check_output_dir(Path(hydra_cfg.run.dir), "hydra.run.dir")
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        # A directory holding this very run is fine (skip or resume); one holding another run is refused.
        inspect_run_dir(Path(hydra_cfg.run.dir), config_hash(resolved))
    return checked
