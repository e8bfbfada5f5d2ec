"""Training under label noise: ELR (a per-sample target memory) and Co-teaching (two networks that pick
each other's small-loss samples)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn as nn

from regbench.regularizers.base import Regularizer, TrainProgress, soft_cross_entropy
from regbench.specs.regularizers import REGULARIZERS
from regbench.specs.run_checks import REMEMBER_RATES, forget_rate_for

# ELR's clamp of the predicted probabilities (official code, github.com/shengliu66/ELR), which keeps
# log(1 - <t, p>) finite.
ELR_CLAMP = 1e-4


def elr_probabilities(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().softmax(dim=-1).clamp(ELR_CLAMP, 1.0 - ELR_CLAMP)


def elr_target_update(targets: torch.Tensor, probs: torch.Tensor, beta: float) -> torch.Tensor:
    """t <- beta * t + (1 - beta) * p (Liu et al., 2020, eq. 9), with p detached and renormalized after the
    clamp as in the official code."""
    probs = probs.detach()
    return beta * targets + (1.0 - beta) * probs / probs.sum(dim=-1, keepdim=True)


def elr_penalty(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample log(1 - <t_i, p_i>) (Liu et al., 2020, eq. 6); its gradient pulls p_i toward t_i."""
    return torch.log(1.0 - (targets * probs).sum(dim=-1))


@REGULARIZERS.register("elr")
class ELR(Regularizer, nn.Module):
    """CE + lambda * log(1 - <t_i, p_i>), t_i a running average of the sample's own past predictions."""

    name = "elr"

    def __init__(self, *, lam: float, beta: float, seed: int):
        super().__init__()
        self.lam, self.beta = float(lam), float(beta)
        # (training samples, classes), zeros as in the paper; grown on first sight of a larger sample index.
        self.register_buffer("targets", torch.zeros(0, 0))

    def _ensure_rows(self, rows: int, classes: int, device: torch.device) -> None:
        if self.targets.shape[0] >= rows and self.targets.shape[1] == classes:
            return
        grown = torch.zeros(max(rows, self.targets.shape[0]), classes, device=device)
        if self.targets.shape[1] == classes:
            grown[: self.targets.shape[0]] = self.targets.to(device)
        self.targets = grown

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The memory's size is only known once training ran: take the checkpoint's shape before loading.
        saved = state_dict.get(prefix + "targets")
        if saved is not None:
            self.targets = torch.zeros_like(saved, device=self.targets.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def loss(self, per_sample, logits, targets, index, model):
        probs = elr_probabilities(logits)
        self._ensure_rows(int(index.max()) + 1, probs.shape[-1], probs.device)
        self.targets[index] = elr_target_update(self.targets[index], probs, self.beta)
        return per_sample + self.lam * elr_penalty(probs, self.targets[index])


def kept_count(rate: float, batch: int) -> int:
    return max(1, int(rate * batch))


def small_loss_indices(losses: torch.Tensor, keep: int) -> torch.Tensor:
    return torch.argsort(losses.detach(), stable=True)[:keep]


def coteaching_losses(loss_1: torch.Tensor, loss_2: torch.Tensor,
                      rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each network's per-sample losses on the int(R * B) samples its peer finds easiest."""
    keep = kept_count(rate, loss_1.shape[0])
    return loss_1[small_loss_indices(loss_2, keep)], loss_2[small_loss_indices(loss_1, keep)]


def coteaching_per_sample(loss_1: torch.Tensor, loss_2: torch.Tensor, rate: float) -> torch.Tensor:
    """The pair's loss as (B,) per-sample terms whose batch mean is the mean of `coteaching_losses` for each
    network: a sample kept for a network weighs B/keep, a dropped one 0. Per-sample, so per-class weights and
    later loss hooks apply to it as to any other loss."""
    batch = loss_1.shape[0]
    keep = kept_count(rate, batch)
    weight_1 = torch.zeros_like(loss_1).index_fill(0, small_loss_indices(loss_2, keep), batch / keep)
    weight_2 = torch.zeros_like(loss_2).index_fill(0, small_loss_indices(loss_1, keep), batch / keep)
    return loss_1 * weight_1 + loss_2 * weight_2


def reinitialized_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture with fresh weights drawn from its own generator, and its own random streams (a
    module with a `reseed` method, e.g. nested dropout's layer, draws apart from the original's)."""
    peer = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for position, module in enumerate(peer.modules()):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reseed"):
                module.reseed(seed + position)
    return peer


class CoTeachingPair(nn.Module):
    """Two networks trained side by side. In training, forward returns the first network's logits and
    keeps the peer's in `peer_logits`; in evaluation it runs the network with the better validation
    accuracy (`best`, chosen at the end of each validation epoch)."""

    def __init__(self, net: nn.Module, peer: nn.Module):
        super().__init__()
        self.nets = nn.ModuleList([net, peer])
        self.register_buffer("best", torch.zeros((), dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("val_correct", torch.zeros(2, dtype=torch.long), persistent=False)
        self.peer_logits: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.peer_logits = self.nets[1](images)
            return self.nets[0](images)
        return self.evaluated()(images)

    def evaluated(self) -> nn.Module:
        return self.nets[int(self.best)]


@REGULARIZERS.register("coteaching")
class CoTeaching(Regularizer):
    name = "coteaching"
    copies_network = True

    def __init__(self, *, forget_rate: float | None, num_gradual: int, schedule: str, seed: int,
                 label_noise: Mapping[str, Any] | None = None):
        self.forget_rate = forget_rate_for(forget_rate, label_noise)
        self.num_gradual, self.schedule, self.seed = num_gradual, schedule, seed
        self.pair: CoTeachingPair | None = None

    def remember_rate(self, epoch: int) -> float:
        """The fraction of the batch each network keeps in 0-based training epoch `epoch`."""
        return REMEMBER_RATES[self.schedule](epoch, self.forget_rate, self.num_gradual)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        # A seed stream apart from the one that initialized the first network.
        self.pair = CoTeachingPair(model, reinitialized_copy(model, seed=self.seed + 1_000_003))
        return self.pair

    def loss(self, per_sample, logits, targets, index, model):
        peer_loss = soft_cross_entropy(self.pair.peer_logits, targets)
        rate = self.remember_rate(int(self.pair.epochs_done))
        if self.schedule == "paper":
            # Batch mean = mean loss of network 1 + mean loss of network 2 on their peers' choices: each network
            # gets the gradient of its own small-loss cross-entropy, as with the paper's two separate updates.
            return coteaching_per_sample(per_sample, peer_loss, rate)
        # The official loss divides the kept samples' mean cross-entropy by their number once more.
        return coteaching_per_sample(per_sample, peer_loss, rate) / kept_count(rate, per_sample.shape[0])

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        if progress.epoch_finished:
            self.pair.epochs_done.fill_(progress.epoch + 1)

    @torch.no_grad()
    def on_validation_batch_end(self, model, images, labels, last_batch):
        for i, net in enumerate(self.pair.nets):
            self.pair.val_correct[i] += (net(images).argmax(dim=-1) == labels).sum()
        if last_batch:
            self.pair.best.copy_(self.pair.val_correct.argmax())
            self.pair.val_correct.zero_()


__all__ = ["CoTeaching", "CoTeachingPair", "ELR", "coteaching_losses", "coteaching_per_sample", "elr_penalty",
           "elr_target_update"]
