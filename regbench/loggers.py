"""Experiment loggers by config name (wandb, the default; csv; none) and the flat config they are given."""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any, Mapping

from regbench.errors import check
from regbench.registry import Registry
from regbench.rundir_format import component_names

LOGGERS = Registry("logger", "logger",
                   context=("run_dir", "group", "run_name", "job_type", "run_id", "tags", "config"))
WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (what `wandb login` writes); never touches the network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    check(mode in WANDB_MODES, "wandb.mode", mode, f"allowed: {', '.join(WANDB_MODES)}")
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


@LOGGERS.register("wandb")
def wandb_logger(*, run_dir: Path, group: str, run_name: str, job_type: str | None, run_id: str, tags: list[str],
                 config: dict[str, Any], wandb: Mapping[str, Any]):
    from lightning.pytorch.loggers import WandbLogger

    mode = resolve_wandb_mode(wandb["mode"])
    # A fixed id with resume="allow": a run resumed from its checkpoint continues the same W&B run.
    return WandbLogger(project=wandb["project"], entity=wandb["entity"], group=group, job_type=job_type, tags=tags,
                       mode=mode, save_dir=str(run_dir), name=run_name, id=run_id, resume="allow", config=config)


@LOGGERS.register("csv")
def csv_logger(*, run_dir: Path, group: str, run_name: str, job_type: str | None, run_id: str, tags: list[str],
               config: dict[str, Any]):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=str(run_dir), name="csv_logs", version="")
    logger.log_hyperparams(config)
    return logger


@LOGGERS.register("none")
def no_logger(*, run_dir: Path, group: str, run_name: str, job_type: str | None, run_id: str, tags: list[str],
              config: dict[str, Any]):
    return None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, (list, tuple)) else value
    return flat


def wandb_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config plus stable top-level keys that W&B tables can group by."""
    names = component_names(cfg)
    stable = {f"{family}_name": name for family, name in names.items() if family != "regularizer"}
    stable["regularizer_names"] = names["regularizer"]
    stable.update(seed=cfg["seed"], exp_name=cfg["exp_name"])
    return {**stable, **flatten(cfg)}


def build_logger(cfg: Mapping[str, Any], plan, tags: list[str], config: dict[str, Any]):
    """The experiment logger named by `cfg.name`, filed under the run plan's group, name and id."""
    params = {k: v for k, v in cfg.items() if k != "name"}
    return LOGGERS.create(cfg["name"], params, run_dir=plan.run_dir, group=plan.wandb_group, run_name=plan.wandb_name,
                          job_type=plan.wandb_job_type, run_id=plan.wandb_id, tags=tags, config=config)


def finish_logger(logger, exit_code: int) -> None:
    """Close a W&B run with the run's exit code, so a failed run shows as failed in the dashboard."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is not None and hasattr(experiment, "finish"):
        experiment.finish(exit_code=exit_code)
