"""Data configs as regbench composes them, for tests that use the data code directly: a dataset's config composed
by Hydra (its defaults list merges conf/data/common/label_shift.yaml), and the label-shift sections alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

LABEL_SHIFT_YAML = Path(__file__).resolve().parents[1] / "conf" / "data" / "common" / "label_shift.yaml"


def dataset_config(name: str, seed: int = 0) -> dict[str, Any]:
    """The resolved `data` section of a run with data=`name` and `seed`."""
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"data={name}", f"seed={seed}"])
    return OmegaConf.to_container(cfg.data, resolve=True)


def label_shift(seed: int = 0, **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"noise": ..., "imbalance": ..., "balance": ...}, the sections the data module takes, with `seed` for
    ${seed}; `changes` update a section. (holdout_classes, also in that file, acts when the images load.)"""
    composed = OmegaConf.merge({"seed": seed}, {"data": OmegaConf.load(LABEL_SHIFT_YAML)})
    sections = OmegaConf.to_container(composed, resolve=True)["data"]
    del sections["holdout_classes"]
    for section, values in changes.items():
        sections[section].update(values)
    return sections


def load_dataset(name: str, **arguments: Any):
    """Dataset `name` as its registry entry loads it: `root`, `download` (default false) and `split_seed` (default
    0) as a run passes them; the loader's parameters left out take their defaults from the dataset's YAML."""
    from regbench.specs.data import DATASETS

    context = {"download": False, "split_seed": 0, "root": None}
    context.update({key: arguments.pop(key) for key in list(arguments) if key in context})
    return DATASETS.create(name, arguments, **context)
