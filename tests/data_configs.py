"""The label-shift sections (noise, imbalance, balance) as every dataset config composes them, for tests that build
an ImageDataModule directly: the defaults are read from their one definition, conf/data/common/label_shift.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

LABEL_SHIFT_YAML = Path(__file__).resolve().parents[2] / "conf" / "data" / "common" / "label_shift.yaml"


def label_shift(seed: int = 0, **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"noise": ..., "imbalance": ..., "balance": ...} with `seed` for ${seed}; `changes` update a section."""
    composed = OmegaConf.merge({"seed": seed}, {"data": OmegaConf.load(LABEL_SHIFT_YAML)})
    sections = OmegaConf.to_container(composed, resolve=True)["data"]
    for section, values in changes.items():
        sections[section].update(values)
    return sections
