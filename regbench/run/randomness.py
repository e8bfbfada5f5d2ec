"""Every random stream a run draws from, as checkpointable state.

A run resumed from a checkpoint must draw the same dropout masks, mixing lambdas and crops as the run that was
never stopped. Lightning checkpoints weights, optimizer and loop state but not random streams, so this module
captures them: the global torch/numpy/python generators and every `random.Random` or `torch.Generator` held in
an attribute of the regularizers or of any submodule of the model.
"""
from __future__ import annotations

import random
from typing import Any, Iterable

import lightning as L
import numpy as np
import torch

Streams = dict[str, Any]


def _owners(pl_module: L.LightningModule) -> Iterable[tuple[str, object]]:
    seen: set[int] = set()
    named = [(f"regularizer.{reg.name}", reg) for reg in getattr(pl_module, "regularizers", [])]
    named += [(f"module.{name}", module) for name, module in pl_module.named_modules()]
    for name, owner in named:
        if id(owner) not in seen:
            seen.add(id(owner))
            yield name, owner


def capture_streams(pl_module: L.LightningModule) -> Streams:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: Streams = {
        # Plain tensors, tuples and numbers only: Lightning loads checkpoints with torch.load(weights_only=True).
        "torch": torch.get_rng_state(), "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "owned": {},
    }
    for owner_name, owner in _owners(pl_module):
        for attr, value in vars(owner).items():
            if isinstance(value, random.Random):
                state["owned"][f"{owner_name}:{attr}"] = ("python", None, value.getstate())
            elif isinstance(value, torch.Generator):
                state["owned"][f"{owner_name}:{attr}"] = ("torch", str(value.device), value.get_state())
    return state


def restore_streams(pl_module: L.LightningModule, state: Streams) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(state["python"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    owners = dict(_owners(pl_module))
    for key, (kind, device, stream_state) in state["owned"].items():
        owner_name, attr = key.rsplit(":", 1)
        owner = owners.get(owner_name)
        if owner is None:
            continue
        if kind == "python":
            stream = getattr(owner, attr, None) or random.Random()
            stream.setstate(stream_state)
        else:
            # A generator made lazily on first use may not exist yet in the resumed process.
            stream = getattr(owner, attr, None) or torch.Generator(device=device)
            stream.set_state(stream_state)
        setattr(owner, attr, stream)


class ResumableRandomness(L.Callback):
    """Saves the random streams in every checkpoint and restores them when a run resumes from one."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["regbench_random_streams"] = capture_streams(pl_module)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if "regbench_random_streams" in checkpoint:
            restore_streams(pl_module, checkpoint["regbench_random_streams"])
