"""Stable descriptions of a run's config: component names, a flat W&B config, and a content hash."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from regbench.regularizers import regularizer_names

# Keys that say where a run writes, not what it computes.
OUTPUT_KEYS = ("run_dir",)


def component_names(cfg: Mapping[str, Any]) -> dict[str, str]:
    return {
        "data": cfg["data"]["name"], "backbone": cfg["backbone"]["name"], "norm": cfg["norm"]["name"],
        "regularizer": "+".join(regularizer_names(cfg["regularizer"])), "optim": cfg["optim"]["name"],
        "sched": cfg["sched"]["name"],
    }


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


def config_hash(cfg: Mapping[str, Any]) -> str:
    content = {k: v for k, v in cfg.items() if k not in OUTPUT_KEYS}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
