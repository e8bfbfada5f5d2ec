"""STORM (Heck et al., "Learning from Noisy Labels via Self-Taught On-the-Fly Meta Loss Rescaling", AAAI 2025):
each training sample's loss is scaled by a weight that a small rescaling network Omega computes from features of
the model's own prediction; Omega is meta-learned on the fly, in the same training loop, without clean data: its
meta set is drawn from the noisy training batch itself, by Omega's own weights.

One training step (after `warmup_epochs` of plain cross-entropy):
  1. w = Omega(features), normalized to mean 1 over the batch;
  2. a virtual SGD step theta' = theta - lr * grad_theta mean_i(w_i l_i(theta)), lr the optimizer's current rate;
  3. the meta loss: mean cross-entropy of theta' on the meta set (the `meta_fraction` of the batch with the
     largest weights), differentiated through theta' to Omega, whose own Adam optimizer takes one step;
  4. the training loss is mean_i(w_i l_i) with the updated Omega's weights, detached.
The look-ahead runs the network functionally (torch.func.functional_call) on copies of its buffers, so the
virtual step never moves batch-norm statistics.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from regbench.errors import UserError, check, check_non_negative, check_positive, check_positive_int
from regbench.regularizers.base import Regularizer, TrainProgress, soft_cross_entropy
from regbench.runshape import Inactive, RunShape
from regbench.specs.regularizers import REGULARIZERS, Exclusion

# Per-sample features Omega sees: the loss, the prediction's entropy over log C, the probability of the label.
NUM_FEATURES = 3


def sample_features(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, 3) detached features of each sample: its cross-entropy, its normalized prediction entropy in [0, 1],
    and the probability the prediction gives its (soft) label."""
    log_probs = torch.log_softmax(logits.detach().float(), dim=-1)
    probs = log_probs.exp()
    loss = -(targets * log_probs).sum(dim=-1)
    entropy = -(probs * log_probs).sum(dim=-1) / math.log(logits.shape[-1])
    label_probability = (targets * probs).sum(dim=-1)
    return torch.stack([loss, entropy, label_probability], dim=-1)


def normalized_weights(scores: torch.Tensor) -> torch.Tensor:
    """Non-negative scores scaled to mean 1 over the batch, so the weighted loss keeps the plain loss's scale."""
    return scores / scores.mean().clamp_min(torch.finfo(scores.dtype).tiny)


def meta_set(weights: torch.Tensor, fraction: float) -> torch.Tensor:
    """The indices of the ceil(fraction * B) samples Omega weighs most: the self-taught meta set."""
    count = max(1, math.ceil(fraction * weights.shape[0]))
    return torch.topk(weights.detach(), count).indices


def lookahead_meta_loss(network: nn.Module, weighted_loss: torch.Tensor, meta_images: torch.Tensor,
                        meta_targets: torch.Tensor, lr: float) -> torch.Tensor:
    """Mean cross-entropy on the meta set of the network after one virtual SGD step of size `lr` on
    `weighted_loss` (a graph through the network's parameters and the sample weights); differentiable in the
    weights. Buffers are copied, so the network's batch-norm statistics stay as they were."""
    names, params = zip(*[(name, p) for name, p in network.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(weighted_loss, params, create_graph=True, allow_unused=True)
    stepped = {name: p if g is None else p - lr * g for name, p, g in zip(names, params, grads)}
    buffers = {name: b.clone() for name, b in network.named_buffers()}
    meta_logits = functional_call(network, (stepped, buffers), (meta_images,))
    return soft_cross_entropy(meta_logits, meta_targets).mean()


class RescalingNet(nn.Module):
    """Omega: features -> hidden ReLU layer -> sigmoid score in (0, 1)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(NUM_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layers(features)).squeeze(-1)


@REGULARIZERS.register("storm")
class STORM(Regularizer, nn.Module):
    name = "storm"
    exclusive = (Exclusion.NOISY_LABEL_LOSS,)

    def __init__(self, *, hidden: int, meta_lr: float, meta_fraction: float, warmup_epochs: int, seed: int):
        super().__init__()
        check_positive_int("hidden", hidden)
        check_positive("meta_lr", meta_lr)
        check(isinstance(meta_fraction, (int, float)) and not isinstance(meta_fraction, bool)
              and 0.0 < meta_fraction <= 1.0, "meta_fraction", meta_fraction, "must be a fraction in (0, 1]")
        check(isinstance(warmup_epochs, int) and not isinstance(warmup_epochs, bool), "warmup_epochs",
              warmup_epochs, "must be an integer >= 0")
        check_non_negative("warmup_epochs", warmup_epochs)
        self.meta_lr, self.meta_fraction, self.warmup_epochs = float(meta_lr), float(meta_fraction), warmup_epochs
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.rescaler = RescalingNet(hidden)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.meta_optimizer: torch.optim.Adam | None = None
        self.pending_meta_state: dict[str, Any] | None = None
        # Set once the network and the main optimizer exist; neither is a submodule of this regularizer.
        self.network_ref: list[nn.Module] = []
        self.optimizer_ref: list[torch.optim.Optimizer] = []
        self.images: torch.Tensor | None = None

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        if run["trainer"].get("compile"):
            raise UserError("regularizer=storm cannot run with trainer.compile=true: its look-ahead calls the network "
                            "functionally with stepped weights; use trainer.compile=false")
        for other in others:
            why = None
            if other.copies_network or other.wraps_after_others:
                why = "it wraps or copies the network after STORM has taken it for the look-ahead"
            elif type(other).task_loss is not Regularizer.task_loss or \
                    type(other).reduce_logits is not Regularizer.reduce_logits:
                why = "it widens the training logits, which the look-ahead's cross-entropy does not read"
            elif type(other).mix_batch is not Regularizer.mix_batch:
                why = "it changes the batch, and the look-ahead must see the images and labels the network saw"
            if why:
                raise UserError(f"regularizer=storm cannot be stacked with {other.name}: {why}")

    def check_run(self, shape: RunShape) -> list[Inactive]:
        if self.warmup_epochs >= shape.max_epochs:
            return [Inactive("warmup_epochs", self.warmup_epochs,
                             f"covers all {shape.max_epochs} epochs: every loss keeps weight 1")]
        return []

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.network_ref[:] = [model]
        return model

    def configure_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer_ref[:] = [optimizer]

    def mix_batch(self, images, targets, index):
        self.images = images
        return images, targets

    def weights(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Omega's normalized per-sample weights (with Omega's graph)."""
        return normalized_weights(self.rescaler(sample_features(logits, targets)))

    def meta_step(self, per_sample: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """One Adam step of Omega on the look-ahead meta loss of the current batch."""
        weights = self.weights(logits, targets)
        chosen = meta_set(weights, self.meta_fraction)
        lr = self.optimizer_ref[0].param_groups[0]["lr"]
        meta_loss = lookahead_meta_loss(self.network_ref[0], (weights * per_sample).mean(), self.images[chosen],
                                        targets[chosen], lr)
        optimizer = self.ensure_meta_optimizer()
        optimizer.zero_grad(set_to_none=True)
        grads = torch.autograd.grad(meta_loss, list(self.rescaler.parameters()))
        for param, grad in zip(self.rescaler.parameters(), grads):
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(grad)  # every rank keeps the same Omega
                grad /= torch.distributed.get_world_size()
            param.grad = grad
        optimizer.step()

    def ensure_meta_optimizer(self) -> torch.optim.Adam:
        # Built on first use, once the regularizer sits on the training device.
        if self.meta_optimizer is None:
            self.meta_optimizer = torch.optim.Adam(self.rescaler.parameters(), lr=self.meta_lr)
            if self.pending_meta_state is not None:
                self.meta_optimizer.load_state_dict(self.pending_meta_state)
                self.pending_meta_state = None
        return self.meta_optimizer

    def loss(self, per_sample, logits, targets, index, model):
        if int(self.epochs_done) < self.warmup_epochs:
            return per_sample
        self.meta_step(per_sample, logits, targets)
        with torch.no_grad():
            weights = self.weights(logits, targets)
        self.images = None
        return per_sample * weights

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        if progress.epoch_finished:
            self.epochs_done.fill_(progress.epoch + 1)

    # Omega's Adam moments travel in checkpoints, so a resumed run continues the same meta-optimization.
    def get_extra_state(self) -> dict[str, Any]:
        return {"meta_optimizer": None if self.meta_optimizer is None else self.meta_optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.meta_optimizer, self.pending_meta_state = None, state["meta_optimizer"]


__all__ = ["STORM", "RescalingNet", "lookahead_meta_loss", "meta_set", "normalized_weights", "sample_features"]
