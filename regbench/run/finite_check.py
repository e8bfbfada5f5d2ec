"""The finite-loss check, one step behind, so the step loop never waits for the device.

Each step hands its loss (all-reduced under DDP, so every rank stops at the same step) to the host with a
non-blocking copy; the check reads the previous step's copy, which the device finished long ago while the
current step's work is already queued. A non-finite loss at step k is therefore seen during step k+1, before
its optimizer step: at most one optimizer step (step k's) is taken on it, and the weights it produced are
never validated, checkpointed or tested, because `flush` reads the pending copy at once before any of those.
The run then stops with an error naming step k and saying that its step is discarded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from regbench.errors import TrainingDiverged


@dataclass
class PendingLoss:
    value: torch.Tensor  # on the host once `ready` is done
    ready: torch.cuda.Event | None  # None: the copy was synchronous (CPU)
    epoch: int
    batch: int


class LaggedFiniteCheck:
    def __init__(self) -> None:
        self._pending: PendingLoss | None = None

    def push(self, loss: torch.Tensor, epoch: int, batch: int,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Queue this step's loss and check the previous step's; `reduce` sums it over DDP ranks."""
        value = loss.detach()
        if reduce is not None:
            value = reduce(value.clone())  # the all-reduce works in place, and detach() shares the loss's storage
        ready = None
        if value.device.type == "cuda":
            value = value.to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        previous, self._pending = self._pending, PendingLoss(value, ready, epoch, batch)
        if previous is not None:
            self._check(previous)

    def flush(self) -> None:
        """Check the last queued loss now (before validation, checkpoints and the epoch's statistics)."""
        previous, self._pending = self._pending, None
        if previous is not None:
            self._check(previous)

    @staticmethod
    def _check(pending: PendingLoss) -> None:
        if pending.ready is not None:
            pending.ready.synchronize()
        value = float(pending.value)
        if not math.isfinite(value):
            raise TrainingDiverged(f"the training loss became {value} at epoch {pending.epoch}, batch {pending.batch} "
                                   f"(the one optimizer step taken on it is discarded: nothing after it is validated "
                                   f"or saved); lower optim.lr or check the data and regularizer settings")
