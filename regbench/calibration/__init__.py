"""Post-hoc calibration (`calibrate=[...]`): calibrators fitted on the validation logits, applied to the test
logits. Each method's module is imported when a run first builds it (CALIBRATORS.get)."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.specs.calibration import CALIBRATORS


def build_calibrators(cfg: Mapping[str, Mapping[str, Any]], seed: int) -> list:
    """The `calibrate` mapping (name -> params) as calibrators, in list order; bad values are one-line errors."""
    return [CALIBRATORS.create(name, params or {}, path=f"calibrate.{name}", seed=seed)
            for name, params in cfg.items()]
