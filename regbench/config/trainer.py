"""The `trainer` config group's checks (the Lightning Trainer itself is built in regbench.run.trainer)."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.errors import ParamError, UserError, check, check_positive_int

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true")
# regbench starts DDP ranks itself (see regbench.run.distributed), so strategies that launch processes are refused.
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")


def check_trainer_config(cfg: Mapping[str, Any]) -> None:
    try:
        check_positive_int("max_epochs", cfg["max_epochs"])
        check(cfg["accelerator"] in ACCELERATORS, "accelerator", cfg["accelerator"],
              f"allowed: {', '.join(ACCELERATORS)}")
        check(cfg["precision"] in PRECISIONS, "precision", cfg["precision"], f"allowed: {', '.join(PRECISIONS)}")
        check(cfg["strategy"] in STRATEGIES, "strategy", cfg["strategy"],
              f"allowed: {', '.join(STRATEGIES)} (regbench starts the DDP processes itself)")
        devices = cfg["devices"]
        check(devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices > 0),
              "devices", devices, "must be an integer > 0 or 'auto'")
        check(isinstance(cfg["deterministic"], bool) or cfg["deterministic"] == "warn", "deterministic",
              cfg["deterministic"], "must be true, false or 'warn'")
        check_positive_int("checkpoint_every_n_epochs", cfg["checkpoint_every_n_epochs"])
        for key in ("channels_last", "compile"):
            check(isinstance(cfg[key], bool), key, cfg[key], "must be true or false")
    except ParamError as err:
        raise UserError(str(err.at("trainer"))) from None
