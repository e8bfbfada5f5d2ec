"""The finite-loss check, one step behind, so the step loop never waits for the device.

Each step hands its loss (all-reduced under DDP, so every rank stops at the same step) to the host with a
non-blocking copy; the check reads the previous step's copy, which the device finished long ago while the
current step's work is already queued. A non-finite loss at step k is therefore seen during step k+1, before
its optimizer step: at most one optimizer step (step k's) is taken on it, and the weights it produced are
never validated, checkpointed or tested, because `flush` reads the pending copy at once before any of those.
The run then stops with an error naming step k and saying that its step is discarded.

The same copy carries the step's number of correct predictions: a terminal's progress bar shows the loss and
accuracy as read here, one step late, rather than reading the device at every step itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from regbench.errors import TrainingDiverged


@dataclass
class PendingLoss:
    value: torch.Tensor  # the loss and the number of correct predictions, on the host once `ready` is done
    ready: torch.cuda.Event | None  # None: the copy was synchronous (CPU)
    epoch: int
    batch: int
    samples: int  # the predictions counted, over every rank
    ranks: int  # the loss is summed over them


class LaggedFiniteCheck:
    def __init__(self) -> None:
        self._pending: PendingLoss | None = None
        # The last checked step's mean loss and accuracy, for the progress bar: empty before the first check.
        self.last_step: dict[str, float] = {}

    def push(self, loss: torch.Tensor, epoch: int, batch: int,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, correct: torch.Tensor | None = None,
             ranks: int = 1) -> None:
        """Queue this step's loss (and `correct`, its (B,) predictions' hits) and check the previous step's;
        `reduce` sums them over the `ranks` of DDP."""
        parts = [loss.detach().float()] + ([correct.sum().float()] if correct is not None else [])
        value = torch.stack(parts)  # a copy: the in-place all-reduce leaves the loss itself alone
        if reduce is not None:
            value = reduce(value)
        ready = None
        if value.device.type == "cuda":
            value = value.to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        samples = (correct.numel() if correct is not None else 0) * ranks
        previous, self._pending = self._pending, PendingLoss(value, ready, epoch, batch, samples, ranks)
        if previous is not None:
            self._check(previous)

    def flush(self) -> None:
        """Check the last queued loss now (before validation, checkpoints and the epoch's statistics)."""
        previous, self._pending = self._pending, None
        if previous is not None:
            self._check(previous)

    def _check(self, pending: PendingLoss) -> None:
        if pending.ready is not None:
            pending.ready.synchronize()
        value, *hits = pending.value.tolist()
        if hits:
            self.last_step = {"train_loss_step": value / pending.ranks, "train_acc_step": hits[0] / pending.samples}
        if not math.isfinite(value):
            raise TrainingDiverged(f"the training loss became {value} at epoch {pending.epoch}, batch {pending.batch} "
                                   f"(the one optimizer step taken on it is discarded: nothing after it is validated "
                                   f"or saved); lower optim.lr or check the data and regularizer settings")
