"""STORM (Heck et al., "Learning from Noisy Labels via Self-Taught On-the-Fly Meta Loss Rescaling", AAAI 2025;
official code: STORM's `storm.py`, `modeling.py`, `utils_storm.py`): each training sample's loss is scaled by a
weight in (0, 1) from a small rescaling network Omega, which is meta-learned in the same training loop without
clean data.

One training step, on batch B (the previous step's batch M serves as the meta batch: a uniform draw of the noisy
training set, as the official meta loader's):
  1. features of each sample of B from the network's own predictions (its loss and top probability over the
     training pass and `dropout_rounds` extra passes, the label-prediction agreement, and statistics of the
     sample's group: same label, same agreement), and weights w = Omega_y(features), y the sample's label;
  2. a virtual step theta' = theta - lr * grad_theta mean_i(w_i l_i(theta)) with the optimizer's current rate;
  3. the meta loss mean_j(v_j l_j(theta')) on M, v = Omega's weights of M's samples at theta' (the "meta loss
     rescaling" that makes noisy meta data usable), differentiated through v and theta' to Omega, whose own
     Adam takes one step;
  4. the network trains on mean_i(w_i l_i), with the weights of step 1 (Omega before its update), detached.
The look-ahead and extra passes call the network functionally (torch.func.functional_call) on copies of its
buffers, so they never move batch-norm statistics.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call

from regbench.errors import UserError
from regbench.regularizers.base import Regularizer, soft_cross_entropy
from regbench.specs.regularizers import REGULARIZERS

# The official feature set: 6 sample statistics, each with its group's mean and std, and the agreement flag.
NUM_FEATURES = 19
# The official floor for a standard deviation that would be zero (a group of one sample, a zero-width Gaussian).
STD_FLOOR = 1e-8
# torch.nn.BatchNorm1d's default epsilon, which the official rescaler's normalization layers use.
NORM_EPS = 1e-5
# The official rescaler's initialization (the Transformers default): weights N(0, 0.02^2), biases 0.
INIT_STD = 0.02


def pass_statistics(losses: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """From R passes' (R, B) losses and (R, B, C) logits: each sample's loss mean and std, top-probability mean and
    std over the passes (unbiased stds, 0 for one pass), and whether the majority of the passes predicts its label
    (a tie goes to the first pass, the training one)."""
    top_probs = logits.float().softmax(dim=-1).amax(dim=-1)
    votes = (logits.argmax(dim=-1) == labels).sum(dim=0)
    rounds = logits.shape[0]
    agreement = torch.where(2 * votes == rounds, logits[0].argmax(dim=-1) == labels, 2 * votes > rounds)
    spread = (lambda x: x.std(dim=0)) if rounds > 1 else (lambda x: torch.zeros_like(x[0]))
    losses = losses.float()
    return losses.mean(dim=0), spread(losses), top_probs.mean(dim=0), spread(top_probs), agreement


def group_mean_std(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's group mean and unbiased std of `values` (STD_FLOOR for a group of one)."""
    counts = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(
        0, groups, torch.ones_like(values))
    means = torch.zeros_like(counts).index_add_(0, groups, values) / counts.clamp_min(1)
    squares = torch.zeros_like(counts).index_add_(0, groups, (values - means[groups]) ** 2)
    stds = torch.where(counts > 1, (squares / (counts - 1).clamp_min(1)).sqrt(), torch.full_like(counts, STD_FLOOR))
    return means[groups], stds[groups]


def gaussian_kl(p_mean: torch.Tensor, p_std: torch.Tensor, q_mean: torch.Tensor, q_std: torch.Tensor) -> torch.Tensor:
    """KL(N(p_mean, p_std^2) || N(q_mean, q_std^2)); 0 where either std is 0, as the official code."""
    defined = (p_std > 0) & (q_std > 0)
    p_std, q_std = torch.where(defined, p_std, 1.0), torch.where(defined, q_std, 1.0)
    kl = torch.log(q_std / p_std) + (p_std ** 2 + (p_mean - q_mean) ** 2) / (2 * q_std ** 2) - 0.5
    return torch.where(defined, kl, torch.zeros_like(kl))


def normal_overlap(mean_1: torch.Tensor, std_1: torch.Tensor, mean_2: torch.Tensor,
                   std_2: torch.Tensor) -> torch.Tensor:
    """The overlapping coefficient of two normal densities (Inman & Bradley, 1989): the area under both, from the
    points where the densities cross."""
    mean_1, std_1, mean_2, std_2 = (t.double() for t in (mean_1, std_1, mean_2, std_2))
    var_1, var_2 = std_1 ** 2, std_2 ** 2
    dv = var_2 - var_1
    dm = (mean_2 - mean_1).abs()
    equal_widths = torch.erfc(dm / (2.0 * std_1 * math.sqrt(2.0)))
    safe_dv = torch.where(dv == 0, 1.0, dv)
    a = mean_1 * var_2 - mean_2 * var_1
    b = std_1 * std_2 * (dm ** 2 + dv * torch.log(var_2 / var_1)).sqrt()
    cdf = lambda x, mean, std: 0.5 * torch.erfc((mean - x) / (std * math.sqrt(2.0)))  # noqa: E731
    outside = sum((cdf(x, mean_2, std_2) - cdf(x, mean_1, std_1)).abs() for x in ((a + b) / safe_dv, (a - b) / safe_dv))
    return torch.where(dv == 0, equal_widths, 1.0 - outside).float()


def sample_features(losses: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The official default features (B, 19) of a batch from R passes' (R, B) losses and (R, B, C) logits, in its
    order: loss mean, loss std, probability mean, probability std, KL and overlap of the sample's loss Gaussian
    with its group's (mean of the loss means, mean of the loss stds), each followed by its group's mean and std,
    then the agreement. A group is the samples of one label that agree (or disagree) with it."""
    with torch.no_grad():
        loss_mean, loss_std, prob_mean, prob_std, agreement = pass_statistics(losses, logits, labels)
        groups = 2 * labels + (~agreement).long()
        num_groups = 2 * num_classes
        group_loss_mean, _ = group_mean_std(loss_mean, groups, num_groups)
        group_loss_std, _ = group_mean_std(loss_std, groups, num_groups)
        kl = gaussian_kl(loss_mean, loss_std, group_loss_mean, group_loss_std)
        overlap = normal_overlap(loss_mean, loss_std.clamp_min(STD_FLOOR), group_loss_mean,
                                 group_loss_std.clamp_min(STD_FLOOR))
        columns = []
        for value in (loss_mean, loss_std, prob_mean, prob_std, kl, overlap):
            columns += [value, *group_mean_std(value, groups, num_groups)]
        return torch.stack([*columns, agreement.float()], dim=-1)


def batch_standardized(x: torch.Tensor) -> torch.Tensor:
    """x normalized over its batch dimension (-2) with the biased variance: BatchNorm1d(affine=False) in training."""
    mean = x.mean(dim=-2, keepdim=True)
    var = x.var(dim=-2, unbiased=False, keepdim=True)
    return (x - mean) / (var + NORM_EPS).sqrt()


class ClassRescalers(nn.Module):
    """Omega: one small network per class, Linear(F, F) -> batch norm -> ReLU -> Linear(F, 2) -> batch norm ->
    softmax, of which the second probability is the weight; a sample is weighed by its label's network. All C
    networks run as one batched computation. The batch norms (no affine, batch statistics: Omega only runs in
    training) tie the weights of a batch together, so they cannot all collapse to 0."""

    def __init__(self, num_classes: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.hidden_weight = nn.Parameter(
            torch.randn(num_classes, NUM_FEATURES, NUM_FEATURES, generator=gen) * INIT_STD)
        self.hidden_bias = nn.Parameter(torch.zeros(num_classes, NUM_FEATURES))
        self.out_weight = nn.Parameter(torch.randn(num_classes, 2, NUM_FEATURES, generator=gen) * INIT_STD)
        self.out_bias = nn.Parameter(torch.zeros(num_classes, 2))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hidden = torch.einsum("bf,cgf->cbg", features, self.hidden_weight) + self.hidden_bias[:, None]
        hidden = batch_standardized(hidden).relu()
        scores = torch.einsum("cbf,cgf->cbg", hidden, self.out_weight) + self.out_bias[:, None]
        weights = batch_standardized(scores).softmax(dim=-1)[..., 1]
        return weights[labels, torch.arange(labels.shape[0], device=labels.device)]


def lookahead_parameters(network: nn.Module, train_loss: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
    """The network's parameters after one virtual SGD step of size `lr` on `train_loss`, differentiable in
    whatever `train_loss` depends on besides them (the sample weights)."""
    names, params = zip(*[(name, p) for name, p in network.named_parameters() if p.requires_grad])
    grads = torch.autograd.grad(train_loss, params, create_graph=True, allow_unused=True)
    return {name: p if g is None else p - lr * g for name, p, g in zip(names, params, grads)}


def functional_logits(network: nn.Module, params: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The network's logits with `params`, on copies of its buffers (batch-norm statistics stay as they were)."""
    buffers = {name: b.clone() for name, b in network.named_buffers()}
    return functional_call(network, ({**params}, buffers), (images,))


@REGULARIZERS.register("storm")
class STORM(Regularizer, nn.Module):
    name = "storm"

    def __init__(self, *, meta_lr: float, dropout_rounds: int, seed: int):
        super().__init__()
        self.meta_lr, self.dropout_rounds, self.seed = float(meta_lr), dropout_rounds, seed
        self.rescalers: ClassRescalers | None = None  # built once the number of classes is known
        self.meta_optimizer: torch.optim.Adam | None = None
        self.pending_meta_state: dict[str, Any] | None = None
        # The network and the main optimizer, set before training; neither is a submodule of this regularizer.
        self.network_ref: list[nn.Module] = []
        self.optimizer_ref: list[torch.optim.Optimizer] = []
        self.images: torch.Tensor | None = None
        self.meta_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        # Each training sample's latest weight (NaN until seen), by sample index, for the report after training.
        self.register_buffer("last_weights", torch.zeros(0))

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
                why = "it changes the batch, and STORM's features and meta batch need the samples' own labels"
            if why:
                raise UserError(f"regularizer=storm cannot be stacked with {other.name}: {why}")

    def set_class_counts(self, counts: torch.Tensor) -> None:
        if self.rescalers is None or self.rescalers.hidden_weight.shape[0] != counts.shape[0]:
            self.rescalers = ClassRescalers(counts.shape[0], self.seed)
            self.meta_optimizer = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Omega's size is only known once the data is, the weight memory's once training ran: take the checkpoint's.
        saved = state_dict.get(prefix + "rescalers.hidden_weight")
        if saved is not None and (self.rescalers is None or self.rescalers.hidden_weight.shape != saved.shape):
            self.rescalers = ClassRescalers(saved.shape[0], self.seed).to(saved.device)
        saved_weights = state_dict.get(prefix + "last_weights")
        if saved_weights is not None:
            self.last_weights = torch.zeros_like(saved_weights, device=self.last_weights.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.network_ref[:] = [model]
        return model

    def configure_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer_ref[:] = [optimizer]

    def mix_batch(self, images, targets, index):
        self.images = images
        return images, targets

    def features(self, params: Mapping[str, torch.Tensor], images: torch.Tensor, losses: torch.Tensor,
                 logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's features from its training-pass `losses` and `logits` and `dropout_rounds` extra passes of the
        network with `params`."""
        network = self.network_ref[0]
        all_losses, all_logits = [losses.detach()], [logits.detach()]
        with torch.no_grad():
            detached = {name: p.detach() for name, p in params.items()}
            for _ in range(self.dropout_rounds):
                extra = functional_logits(network, detached, images)
                all_losses.append(soft_cross_entropy(extra, targets))
                all_logits.append(extra)
        return sample_features(torch.stack(all_losses), torch.stack(all_logits), targets.argmax(dim=-1),
                               targets.shape[-1])

    def weights(self, params: Mapping[str, torch.Tensor], images: torch.Tensor, losses: torch.Tensor,
                logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Omega's per-sample weights in (0, 1), with Omega's graph."""
        if self.rescalers is None:
            raise RuntimeError("STORM's rescalers are unset: call set_class_counts before training")
        features = self.features(params, images, losses, logits, targets)
        return self.rescalers(features.to(self.rescalers.hidden_weight.dtype), targets.argmax(dim=-1))

    def meta_step(self, per_sample: torch.Tensor, weights: torch.Tensor) -> None:
        """One Adam step of Omega on the rescaled meta loss of the meta batch after the virtual step."""
        network = self.network_ref[0]
        lr = self.optimizer_ref[0].param_groups[0]["lr"]
        stepped = lookahead_parameters(network, (weights * per_sample).mean(), lr)
        meta_images, meta_targets = self.meta_batch
        meta_logits = functional_logits(network, stepped, meta_images)
        meta_losses = soft_cross_entropy(meta_logits, meta_targets)
        meta_weights = self.weights(stepped, meta_images, meta_losses, meta_logits, meta_targets)
        meta_loss = (meta_weights * meta_losses).mean()
        params = list(self.rescalers.parameters())
        grads = torch.autograd.grad(meta_loss, params)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        for param, grad in zip(params, grads):
            if distributed:  # every rank keeps the same Omega
                torch.distributed.all_reduce(grad)
                grad /= torch.distributed.get_world_size()
            param.grad = grad
        self.ensure_meta_optimizer().step()

    def ensure_meta_optimizer(self) -> torch.optim.Adam:
        # Built on first use, once Omega sits on the training device.
        if self.meta_optimizer is None:
            self.meta_optimizer = torch.optim.Adam(self.rescalers.parameters(), lr=self.meta_lr)
            if self.pending_meta_state is not None:
                self.meta_optimizer.load_state_dict(self.pending_meta_state)
                self.pending_meta_state = None
        return self.meta_optimizer

    def loss(self, per_sample, logits, targets, index, model):
        params = dict(self.network_ref[0].named_parameters())
        weights = self.weights(params, self.images, per_sample, logits, targets)
        if self.meta_batch is not None:
            self.meta_step(per_sample, weights)
        self.meta_batch = (self.images.detach(), targets.detach())
        self.images = None
        self.remember(index, weights.detach())
        return per_sample * weights.detach()

    def remember(self, index: torch.Tensor, weights: torch.Tensor) -> None:
        rows = int(index.max()) + 1
        if self.last_weights.shape[0] < rows:
            grown = torch.full((rows,), float("nan"), device=weights.device)
            grown[: self.last_weights.shape[0]] = self.last_weights
            self.last_weights = grown
        self.last_weights[index] = weights.float()

    def train_report(self, model: nn.Module, test_batches: Iterable, train_batches: Callable[[], Iterable],
                     is_noisy: torch.Tensor | None) -> dict[str, Any]:
        """The training samples' latest weights: their mean and the share below 0.5 (the official code's
        "filtered" samples), apart for clean and corrupted labels under label noise."""
        weights = self.last_weights.cpu()
        seen = ~weights.isnan()
        if is_noisy is None:
            groups = {"all": seen}
        else:
            noisy = is_noisy.cpu()[: weights.shape[0]]
            groups = {"clean": seen & ~noisy, "noisy": seen & noisy}
        report: dict[str, Any] = {}
        for group, mask in groups.items():
            chosen = weights[mask]
            report[f"mean_{group}"] = float(chosen.mean()) if chosen.numel() else None
            report[f"below_half_{group}"] = float((chosen < 0.5).float().mean()) if chosen.numel() else None
        return {"storm_weights": report}

    # Omega's Adam moments travel in checkpoints, so a resumed run continues the same meta-optimization.
    def get_extra_state(self) -> dict[str, Any]:
        return {"meta_optimizer": None if self.meta_optimizer is None else self.meta_optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.meta_optimizer, self.pending_meta_state = None, state["meta_optimizer"]


__all__ = ["STORM", "ClassRescalers", "functional_logits", "gaussian_kl", "group_mean_std", "lookahead_parameters",
           "normal_overlap", "pass_statistics", "sample_features"]
