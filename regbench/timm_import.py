"""Importing timm without W&B: timm.utils.summary tries `import wandb` for timm's own training scripts, which
regbench never calls, so every timm import would load W&B (about 0.6 s) whatever the run's logger is."""
from __future__ import annotations

import importlib
import sys
from types import ModuleType


def import_timm(module: str = "timm") -> ModuleType:
    """`module` (timm or one of its modules), with `import wandb` failing inside it unless W&B is already loaded."""
    hidden = "wandb" not in sys.modules
    if hidden:
        sys.modules["wandb"] = None  # an import of a None entry raises ImportError, which timm's guard expects
    try:
        return importlib.import_module(module)
    finally:
        if hidden and sys.modules.get("wandb", ...) is None:
            del sys.modules["wandb"]  # a later `import wandb` (logger=wandb) loads it as usual
