"""The regularizer protocol: every hook is optional and the defaults leave training unchanged.

Hooks run in the order of the `regularizer=[...]` list. Targets are soft (B, C) probabilities so that mixing
and smoothing compose; losses are per-sample (B,) so that loss-space techniques compose too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.runshape import RunShape
from regbench.specs.regularizers import EXCLUSIVE_TAGS, Exclusion

if TYPE_CHECKING:  # MemoryBudget only names the type
    from regbench.devices import DeviceMemory


@dataclass(frozen=True)
class TrainProgress:
    """Where training stands after an optimizer step."""

    epoch: int  # 0-based epoch of this step
    max_epochs: int
    epoch_finished: bool  # this was the epoch's last step: validation and checkpointing come next
    step: int  # optimizer steps done, this one included
    total_steps: int  # optimizer steps of the whole training
    train_batches: Iterable  # the training (images, labels, index) batches, e.g. to recompute BN statistics


@dataclass(frozen=True)
class MemoryBudget:
    """What a technique's tensors must fit in, known with the config checks (from the dataset's facts and a dry
    build of the backbone), before any data is loaded."""

    batch_size: int
    num_features: int  # the backbone's pooled features, which its head sees
    num_classes: int
    # The training device's memory, asked only by checks that need it; None where the job runs on another
    # machine (a SLURM job checks again on its node).
    memory: Callable[[], DeviceMemory] | None


class Regularizer:
    """Stateful regularizers (EMA weights, per-sample targets) also subclass nn.Module: the LightningModule
    registers them, so their tensors follow the device and are saved in checkpoints."""

    name: str = ""
    # A technique that trains copies of the network (co-teaching's pair) wraps it after every other technique's
    # architecture change, whatever the list order, so each copy carries them (its own nested dropout layer).
    copies_network: bool = False
    # A weight reparameterization wraps the model after every other technique, copies included, whatever the
    # list order, so that the layers and copies the others add are reparameterized too.
    wraps_after_others: bool = False

    @property
    def exclusive(self) -> tuple[Exclusion, ...]:
        """The tags this regularizer claims (regbench.specs.regularizers.EXCLUSIVE_TAGS): regularizers sharing one
        cannot be stacked (e.g. two input-mixing methods)."""
        return EXCLUSIVE_TAGS.get(self.name, ())

    def check_backbone(self, backbone: Mapping[str, Any]) -> None:
        """Refuse, with one UserError line, a `backbone` config the technique cannot act on; runs with the
        config checks, before any data or model is built."""

    def check_stack(self, run: Mapping[str, Any], others: Sequence["Regularizer"]) -> None:
        """Refuse, with one UserError line, a combination with the rest of the `run` config (norm, optimizer)
        or with the `others` regularizers of the stack; runs with the config checks."""

    def fit_run(self, shape: RunShape) -> None:
        """Resolve settings given relative to the run (a fraction of its epochs) for a run of this `shape`, before
        training. The checks against the shape (a harmful setting refused, an inactive one reported) are torch-free:
        regbench.specs.run_checks."""

    def check_memory(self, budget: MemoryBudget) -> None:
        """Refuse, with a ParamError naming the parameter, settings whose tensors could not fit the `budget`;
        runs with the config checks, before any data is loaded."""

    def set_class_counts(self, counts: torch.Tensor) -> None:
        """The training split's labels counted per class (C,), as the network is trained on them (after any
        long-tail subsampling and label noise); given once, after the data is loaded and before training."""

    def set_image_format(self, image_shape: tuple[int, int, int], mean: torch.Tensor, std: torch.Tensor) -> None:
        """The training images' (C, H, W) and per-channel normalization (C,) on the [0, 1] pixel scale, for
        techniques that bring images of their own into the same form (MixOE's outliers); given once, after the
        data is loaded and before training."""

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """Architecture changes (dropout heads, reparameterized weights); called once before training."""
        return model

    def configure_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Adjust the optimizer's parameter groups once it is built, before the schedule is attached."""

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """After the backward pass (gradients unscaled, before clipping), before the optimizer's step."""

    def mix_batch(self, images: torch.Tensor, targets: torch.Tensor,
                  index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input-space techniques (mixup, cutmix) and target-space ones (smoothing); training batches only."""
        return images, targets

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """A technique whose network returns several logits per sample in training (multi-sample dropout's
        (M, B, C)) computes the per-sample (B,) loss from them; None (the default) leaves it to cross-entropy."""
        return None

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Such a technique's training logits reduced to the (B, C) that the loss hooks, the training accuracy and
        extra forward passes see; the default leaves them as they are."""
        return logits

    def loss(self, per_sample: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             index: torch.Tensor, model: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Loss-space techniques; returns the new per-sample loss. `model` is the training network with its
        logits reduced to (B, C), for techniques that make extra forward passes."""
        return per_sample

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        """After each optimizer step (EMA updates, SWA averaging at epoch ends)."""

    def on_validation_batch_end(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                                last_batch: bool) -> None:
        """Sees each validation batch after it is evaluated (e.g. to pick the better of two networks)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Schedules; called after each training epoch."""

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The network to evaluate (averaged weights for EMA/SWA); the trained one by default."""
        return model

    def ood_score(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """A trained OOD method's (exclusive tag OOD_METHOD, listed in specs.evaluation.OOD_METHODS) own score of
        the evaluated `network`'s normalized `images`, higher for more in-distribution: eval=[ood]'s `method`."""
        raise NotImplementedError(f"regularizer {self.name!r} trains no OOD score")

    def test_report(self, model: nn.Module, test_batches: Iterable, val_batches: Iterable) -> dict[str, Any]:
        """Extra top-level entries for metrics.json, computed once after training on the test batches (and the
        validation batches, for choices made on validation)."""
        return {}

    def train_report(self, model: nn.Module, test_batches: Iterable, train_batches: Callable[[], Iterable],
                     is_noisy: torch.Tensor | None) -> dict[str, Any]:
        """Like test_report, for reports that also need the training set: `train_batches()` builds its unaugmented
        (images, labels trained on, index) batches (on demand: it copies the training images; in-memory datasets
        only, not the streamed folder datasets), and `is_noisy` marks by index the labels that label noise
        corrupted (None for a clean run)."""
        return {}


def evaluated_network(model: nn.Module) -> nn.Module:
    """The network evaluation runs: a model holding several networks (co-teaching's pair) names it."""
    return model.evaluated() if hasattr(model, "evaluated") else model


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against soft targets: -sum_c t_c log softmax(z)_c."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def refuse_rebalancing_stack(name: str, run: Mapping[str, Any], rebalances: str) -> None:
    """The stack check of a long-tail technique that rebalances the classes itself (`rebalances` says how): no
    data.balance sampler on top."""
    balance = run["data"]["balance"]["type"]
    if balance != "none":
        raise UserError(f"regularizer={name} cannot be stacked with data.balance.type={balance}: {rebalances}; use "
                        f"data.balance.type=none")
