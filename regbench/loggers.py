"""Experiment loggers by config name (wandb, the default; tensorboard; mlflow; csv; none) and the flat config they
are given."""
from __future__ import annotations

import importlib.util
import netrc
import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from regbench.errors import UserError, check
from regbench.registry import REQUIRED, Entry, Registry
from regbench.rundir_format import component_names

# Declared here, beside the factories: this module is torch-free, and each factory imports its package itself.
LOGGERS = Registry("logger", "logger", context=("run_dir", "group", "run_name", "job_type", "run_id", "tags", "config"),
                   entries={name: Entry(__name__, params) for name, params in {
                       "csv": {}, "mlflow": {"mlflow": REQUIRED}, "none": {}, "tensorboard": {},
                       "wandb": {"wandb": REQUIRED}}.items()})
WANDB_MODES = ("auto", "online", "offline", "disabled")
# Folders of the run directory that the file-based loggers write.
CSV_DIR, TENSORBOARD_DIR, MLFLOW_DIR = "csv_logs", "tensorboard", "mlruns"
# Loggers whose package Lightning does not bring: the modules that provide them (any one) and what to install.
# W&B is a dependency of regbench, but an environment may still lack it (an install with --no-deps).
LOGGER_PACKAGES = {"tensorboard": (("tensorboardX", "tensorboard"), "tensorboardX"),
                   "mlflow": (("mlflow",), "'regbench[mlflow]' (or mlflow)"), "wandb": (("wandb",), "wandb")}


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

    logger = CSVLogger(save_dir=str(run_dir), name=CSV_DIR, version="")
    logger.log_hyperparams(config)
    return logger


@LOGGERS.register("tensorboard")
def tensorboard_logger(*, run_dir: Path, config: dict[str, Any]):
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.utilities import rank_zero_only

    class OneFileTensorBoardLogger(TensorBoardLogger):
        """Lightning closes the writer after fit and reopens it for test; an event file is named by the second and
        the host, so on a short run the test's file replaced the one holding every epoch. Fit and test share one
        open file here, closed by `finish_logger` at the end of the run."""

        @rank_zero_only
        def finalize(self, status: str) -> None:
            if self._experiment is not None:
                self._experiment.flush()
            if status == "success":
                self.save()

        @rank_zero_only
        def close(self) -> None:
            if self._experiment is not None:
                self._experiment.close()

    # One folder per run directory: a resumed run adds an event file beside the earlier ones, and TensorBoard
    # shows them as one run. No hp_metric: Lightning's placeholder value would look like a result.
    logger = OneFileTensorBoardLogger(save_dir=str(run_dir), name=TENSORBOARD_DIR, version="",
                                      default_hp_metric=False)
    logger.log_hyperparams(config)
    return logger


@LOGGERS.register("mlflow")
def mlflow_logger(*, run_dir: Path, group: str, run_name: str, job_type: str | None, run_id: str, tags: list[str],
                  config: dict[str, Any], mlflow: Mapping[str, Any]):
    from lightning.pytorch.loggers import MLFlowLogger

    uri = mlflow["tracking_uri"] or f"file:{run_dir.resolve() / MLFLOW_DIR}"
    if urlparse(uri).scheme in ("", "file"):
        # MLflow 3 refuses its file store unless asked: a small store inside each run directory is what this is.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    run_tags = {"regbench.run_key": run_id, "regbench.group": group, "regbench.components": ", ".join(tags),
                **({"regbench.job_type": job_type} if job_type else {})}
    logger = MLFlowLogger(experiment_name=mlflow["experiment_name"], run_name=run_name, tracking_uri=uri,
                          tags=run_tags, run_id=existing_mlflow_run(uri, mlflow["experiment_name"], run_id))
    logger.log_hyperparams(config)
    return logger


def existing_mlflow_run(tracking_uri: str, experiment_name: str, run_key: str) -> str | None:
    """The MLflow run an earlier attempt of this run started (tagged with its stable key), so that a resumed run
    continues it, as it continues its W&B run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`regbench.run_key` = '{run_key}'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


@LOGGERS.register("none")
def no_logger(*, run_dir: Path, group: str, run_name: str, job_type: str | None, run_id: str, tags: list[str],
              config: dict[str, Any]):
    return None


def check_logger_config(cfg: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, an unknown logger setting, a value out of range, or a logger whose optional
    package is missing; a bad value raises a ParamError naming its key below `logger`."""
    name = cfg["name"]
    LOGGERS.check_parameters(name, [key for key in cfg if key != "name"])
    if name == "wandb":
        resolve_wandb_mode(cfg["wandb"]["mode"])
    if name == "mlflow":
        experiment, uri = cfg["mlflow"]["experiment_name"], cfg["mlflow"]["tracking_uri"]
        check(isinstance(experiment, str) and experiment != "", "mlflow.experiment_name", experiment,
              "must be a non-empty name")
        check(uri is None or (isinstance(uri, str) and uri != ""), "mlflow.tracking_uri", uri,
              "null (a store in the run directory) or a tracking URI: http://host:port, sqlite:///path/mlflow.db or "
              "file:/path/mlruns")
    check_logger_installed(name)


def check_logger_installed(name: str) -> None:
    """Refuse, before anything runs, a logger whose optional package is missing."""
    if name not in LOGGER_PACKAGES:
        return
    modules, install = LOGGER_PACKAGES[name]
    if not any(importlib.util.find_spec(module) for module in modules):
        raise UserError(f"logger={name} needs {' or '.join(modules)}, which is not installed here; "
                        f"pip install {install}, or choose another logger ({', '.join(LOGGERS.names())})")


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
    """Close a W&B run with the run's exit code, so a failed run shows as failed in the dashboard; close a logger
    that keeps its file open across fit and test."""
    experiment = getattr(logger, "_experiment", None)
    if experiment is not None and hasattr(experiment, "finish"):
        experiment.finish(exit_code=exit_code)
    if hasattr(logger, "close"):
        logger.close()
