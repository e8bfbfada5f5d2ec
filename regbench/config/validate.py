"""Checks of one composed run config, in stages. `check_config` needs no torch: every name known, every component's
keys its own, seeds, the trainer and logger settings; it is all that a command that only prints the config runs.
`validate_config` adds, for a run that will train, the checks of its planned shape and devices, still torch-free
(regbench.config.planned), then those that need the model code (regbench.config.buildable), importing it only
then."""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from regbench.specs.data_values import check_data_values
from regbench.config.trainer import check_trainer_config
from regbench.errors import ParamError, UserError, check
from regbench.init.source import check_init_config
from regbench.loggers import check_logger_config
from regbench.specs.backbones import BACKBONES
from regbench.specs.calibration import CALIBRATORS
from regbench.specs.data import DATASETS
from regbench.specs.evaluation import EVALUATIONS, check_method_score
from regbench.specs.norms import NORMS
from regbench.specs.optim import OPTIMIZERS, SCHEDULES
from regbench.specs.regularizers import REGULARIZERS

# What a hyperparameter search may optimize: validation metrics of metrics.json.
OPTIMIZABLE_METRICS = ("best_val_acc", "val_acc", "val_nll", "val_ece", "crafted_best_val_crafted_acc")
# Seeds reach numpy's legacy seeding (Lightning's seed_everything), which takes 32-bit unsigned integers.
SEED_LIMIT = 2 ** 32


def validate_config(cfg: dict[str, Any], on_this_machine: bool = True) -> list[dict[str, str]]:
    """check_config, check_planned_run (with every component checked against the run's shape), then the components
    built and the model built on the meta device (see check_buildable). Returns the components that would be
    inactive (metrics.json's `inactive`)."""
    from regbench.config.planned import check_planned_run  # numpy, the data facts: only for a run that trains

    check_config(cfg)
    planned = check_planned_run(cfg, on_this_machine)
    from regbench.config.buildable import check_buildable  # torch: only for a run that trains

    check_buildable(cfg, planned.shape, on_this_machine)
    return [dict(component) for component in planned.inactive]


def check_config(cfg: Mapping[str, Any]) -> None:
    """The checks that need no torch: seeds, the run name, every component's name, its config keys and the values
    that need no knowledge of the run, the data values, the trainer, the init source's path and format, the
    optimized metric and the logger."""
    check_seeds(cfg)
    check(isinstance(cfg["exp_name"], str) and cfg["exp_name"] != "", "exp_name", cfg["exp_name"],
          "must be a non-empty string")
    DATASETS.entry(cfg["data"]["name"])
    try:
        check_data_values(cfg["data"])
    except ParamError as err:
        raise UserError(str(err.at("data"))) from None
    for registry in (NORMS, BACKBONES, OPTIMIZERS, SCHEDULES):
        component = cfg[registry.config_key]
        params = {key: value for key, value in component.items() if key != "name"}
        if registry is not NORMS:  # a norm's keys include its placement keys (checked with the model code)
            registry.check_parameters(component["name"], params)
        registry.check_values(component["name"], params)
    for registry in (REGULARIZERS, CALIBRATORS, EVALUATIONS):  # list groups: name -> params
        for name, params in cfg[registry.config_key].items():
            registry.check_parameters(name, params or {}, f"{registry.config_key}.{name}")
            registry.check_values(name, params or {}, f"{registry.config_key}.{name}")
    check_method_score(cfg)
    check_trainer_config(cfg["trainer"])
    check_init_config(cfg)
    metric = cfg.get("optimized_metric")
    check(metric is None or metric in OPTIMIZABLE_METRICS, "optimized_metric", metric,
          f"allowed: {', '.join(OPTIMIZABLE_METRICS)} (tune on validation metrics, never on the test set)")
    check(metric != "crafted_best_val_crafted_acc" or bool(cfg["data"]["crafted_val"]["shifts"]), "optimized_metric",
          metric, "is reported only with crafted-shift validation: set data.crafted_val.shifts (see the README)")
    try:
        check_logger_config(cfg["logger"])
    except ParamError as err:
        raise UserError(str(err.at("logger"))) from None


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
