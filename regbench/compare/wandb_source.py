"""Load the same run records from W&B: `Api().runs(ENTITY/PROJECT, filters={"group": G})`.

The API object is a parameter so tests can pass a fake; only `runs()` and, per run, `id`, `state`, `config`,
`summary` and `history()` are used.
"""

from __future__ import annotations

import math

import numpy as np

from regbench.compare.grouping import COMPONENT_ORDER
from regbench.compare.runs import MalformedRun, RunCollection, RunRecord, SkippedRun
from regbench.errors import UserError

HISTORY_SAMPLES = 10_000  # epochs are few; a high cap keeps the curves unsampled


def load_wandb_runs(project_path: str, group: str | None, api=None) -> RunCollection:
    entity, _, project = project_path.partition("/")
    if not entity or not project or "/" in project:
        raise UserError(f"--wandb {project_path!r} is invalid: expected ENTITY/PROJECT")
    import wandb  # imported here: it is slow to import and only this source needs it

    filters = {"group": group} if group else {}
    try:
        api = api if api is not None else wandb.Api()
        runs = list(api.runs(project_path, filters=filters))
    except (wandb.errors.Error, OSError) as err:  # not logged in, offline, no such project
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read W&B runs of {project_path!r}: {first_line}") from err

    collection = RunCollection()
    for run in runs:
        source = f"wandb:{project_path}/{run.id}"
        if run.state != "finished":
            collection.not_completed.append(SkippedRun(source, run.state))
            continue
        try:
            collection.completed.append(_record(source, run))
        except MalformedRun as err:
            collection.malformed.append(SkippedRun(source, str(err)))
    return collection


def _record(source: str, run) -> RunRecord:
    config = {key: value for key, value in dict(run.config).items() if not key.startswith("_")}
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MalformedRun(f"config 'seed' is {seed!r}, not an integer")
    summary = {key: _final_value(value) for key, value in run.summary.items() if not key.startswith("_")}
    metrics = {key: float(value) for key, value in summary.items() if _is_number(value)}
    return RunRecord(
        source=source, seed=seed, config=config, components=_components(config), metrics=metrics,
        history=_history(run.history(samples=HISTORY_SAMPLES, pandas=False)),
    )


def _final_value(value):
    """A summary entry's final value: regbench's epoch metrics keep their best and last values (`{"max": ...,
    "last": ...}`), and the last is the one metrics.json holds."""
    return value.get("last") if hasattr(value, "get") else value


def _components(config: dict) -> dict[str, str]:
    """Component names from nested (`norm: {name: ...}`) or flattened (`norm_name`) config keys."""
    components = {}
    for name in COMPONENT_ORDER:
        nested = config.get(name)
        if isinstance(nested, dict) and isinstance(nested.get("name"), str):
            components[name] = nested["name"]
        elif isinstance(config.get(f"{name}_name"), str):
            components[name] = config[f"{name}_name"]
    # the regularizer is a mapping from names to parameters, or logged flat as a list of names
    names = config.get("regularizer_names")
    if names is None and isinstance(config.get("regularizer"), dict):
        names = list(config["regularizer"])
    if isinstance(names, str):
        names = [names] if names else []
    if isinstance(names, (list, tuple)):
        components["regularizer"] = "+".join(map(str, names)) or "none"
    return components


def _history(rows: list[dict]) -> dict[str, np.ndarray]:
    """One row per epoch, keeping each column's last logged value in that epoch.

    Rows come in logging order. Lightning's own rows carry `epoch`; a row without it (regbench's per-epoch
    summary -- train_acc, the epoch's mean train_loss, train_acc_clean/noisy, images_per_s -- is logged
    straight to the logger right after that epoch's validation row) belongs to the epoch of the row before it.
    Rows before the first epoch-stamped row are skipped.
    """
    by_epoch: dict[float, dict[str, float]] = {}
    epoch = None
    for row in rows:
        if _is_number(row.get("epoch")):
            epoch = row["epoch"]
        if epoch is None:
            continue
        values = by_epoch.setdefault(float(epoch), {})
        values.update({k: float(v) for k, v in row.items() if k != "epoch" and not k.startswith("_") and _is_number(v)})
    epochs = sorted(by_epoch)
    columns = sorted({column for values in by_epoch.values() for column in values})
    history = {"epoch": np.array(epochs)}
    history.update({c: np.array([by_epoch[e].get(c, math.nan) for e in epochs]) for c in columns})
    return history


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
