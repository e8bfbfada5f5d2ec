"""SADE (Zhang, Hooi, Hong & Feng, "Self-Supervised Aggregation of Diverse Experts for Test-Agnostic Long-Tailed
Recognition", NeurIPS 2022): three expert heads on shared features, each trained for a different class distribution
(Sec. 4.1), and expert weights fitted at test time on the unlabeled test inputs (Sec. 4.2).

Training loss, summed over the experts: softmax cross-entropy (forward expert, the training distribution),
balanced softmax CE(v + log pi) (uniform expert), inverse softmax CE(v + log pi - lambda log pi_inv) (backward
expert), pi the training prior and pi_inv the inverse prior. Prediction: the mean of the experts' logits, or their
softmax(omega)-weighted sum with omega fitted to maximize the cosine similarity of the predictions on two augmented
views of each test input, the network frozen.

regbench gives each expert its own copy of the head on the shared pooled features; the paper shares the early
layers and gives each expert its own later block and cosine classifier.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.data.batches import BatchAugment
from regbench.data.class_counts import exponential_counts
from regbench.data.imbalance import select_per_class
from regbench.regularizers.base import Regularizer, evaluated_network, refuse_rebalancing_stack, soft_cross_entropy
from regbench.regularizers.dropout import wrap_head
from regbench.rundir_format import SADE_TEST_DISTRIBUTIONS, sade_accuracy_key
from regbench.specs.regularizers import REGULARIZERS

EXPERTS = ("forward", "uniform", "backward")
# The official code's guard inside log(prior), so a class absent from the training split has a finite logit shift.
LOG_EPS = 1e-9
# The official test-time optimizer of the weights (configs/test_time_*.json): SGD with Nesterov momentum 0.9 and
# weight decay 5e-4; it stops after the epoch in which some expert's weight falls below 0.05.
TEST_TIME_MOMENTUM = 0.9
TEST_TIME_WEIGHT_DECAY = 5e-4
MIN_EXPERT_WEIGHT = 0.05
# The official cosine similarity's eps (torch.nn.CosineSimilarity(dim=1, eps=1e-6)).
COSINE_EPS = 1e-6


def class_prior(counts: torch.Tensor) -> torch.Tensor:
    counts = counts.double()
    return (counts / counts.sum()).float()


def inverse_prior(prior: torch.Tensor) -> torch.Tensor:
    """The prior's values assigned in reversed rank order (official `inverse_prior`): the most frequent class gets
    the smallest probability, the second most frequent the second smallest, and so on. Ties keep class order."""
    values, ascending = torch.sort(prior, stable=True)
    rank = torch.empty_like(ascending)
    rank[ascending] = torch.arange(len(prior), device=prior.device)
    return values[len(prior) - 1 - rank]


def balanced_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """Per-sample CE(v + log pi) (Ren et al., 2020): trained on the long-tailed prior, softmax(v) fits a uniform one."""
    return soft_cross_entropy(logits + log_prior, targets)


def inverse_softmax_loss(logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor,
                         log_inverse_prior: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-sample CE(v + log pi - lambda log pi_inv) (Eq. 3): softmax(v) fits the inversely long-tailed prior."""
    return soft_cross_entropy(logits + log_prior - lam * log_inverse_prior, targets)


def aggregate(expert_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_k w_k v_k over the (E, ..., C) expert logits."""
    return torch.tensordot(weights.to(expert_logits.dtype), expert_logits, dims=1)


def reset_parameters(module: nn.Module) -> None:
    for layer in module.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()


class ExpertHeads(nn.Module):
    """Copies of the head on the same features. Training, or inside `all_experts()`: the (E, B, C) expert logits.
    Evaluation: their mean, the paper's prediction before test-time aggregation."""

    def __init__(self, head: nn.Module, num_experts: int):
        super().__init__()
        copies = [copy.deepcopy(head) for _ in range(num_experts - 1)]
        for expert in copies:  # independently initialized, as the paper's experts
            reset_parameters(expert)
        self.experts = nn.ModuleList([head, *copies])
        self.split = False

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([expert(features) for expert in self.experts])
        return logits if self.training or self.split else logits.mean(dim=0)

    @contextmanager
    def all_experts(self) -> Iterator[None]:
        self.split = True
        try:
            yield
        finally:
            self.split = False


class AggregationFit:
    """Test-time weights w = softmax(omega) of one test distribution, omega starting equal (uniform weights),
    trained to maximize the mean cosine similarity of softmax(sum_k w_k v_k) between two views (Eq. 5)."""

    def __init__(self, num_experts: int, lr: float, batch_size: int):
        self.omega = torch.full((num_experts,), 1.0 / num_experts, requires_grad=True)
        self.optimizer = torch.optim.SGD([self.omega], lr=lr, momentum=TEST_TIME_MOMENTUM, nesterov=True,
                                         weight_decay=TEST_TIME_WEIGHT_DECAY)
        self.batch_size = batch_size
        self.stopped = False

    @property
    def weights(self) -> torch.Tensor:
        return self.omega.detach().softmax(dim=0)

    def epoch(self, view_a: torch.Tensor, view_b: torch.Tensor, gen: torch.Generator) -> None:
        """One pass over the (E, N, C) CPU expert logits of the two views, in a random order of batches."""
        order = torch.randperm(view_a.shape[1], generator=gen)
        with torch.enable_grad():
            for index in order.split(self.batch_size):
                weights = self.omega.softmax(dim=0)
                probs_a = aggregate(view_a[:, index], weights).softmax(dim=-1)
                probs_b = aggregate(view_b[:, index], weights).softmax(dim=-1)
                loss = -F.cosine_similarity(probs_a, probs_b, dim=-1, eps=COSINE_EPS).mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.stopped = bool((self.weights < MIN_EXPERT_WEIGHT).any())


def distribution_counts(available: Sequence[int], train_counts: Sequence[int], factor: float) -> dict[str, list[int]]:
    """Per-class test counts of the forward long-tailed, uniform and backward long-tailed test distributions: the
    exponential profile with imbalance `factor` from n = the smallest class's test images, the largest count to the
    class with the most training images (forward) or the fewest (backward); uniform keeps n of every class."""
    num_classes, n = len(available), min(available)
    profile = exponential_counts(n, num_classes, factor)
    by_frequency = sorted(range(num_classes), key=lambda c: -train_counts[c])  # stable: ties in class order
    forward, backward = [0] * num_classes, [0] * num_classes
    for rank, c in enumerate(by_frequency):
        forward[c], backward[c] = profile[rank], profile[num_classes - 1 - rank]
    counts = {"forward": forward, "uniform": [n] * num_classes, "backward": backward}
    return {name: counts[name] for name in SADE_TEST_DISTRIBUTIONS}


@REGULARIZERS.register("sade")
class SADE(Regularizer, nn.Module):
    name = "sade"

    def __init__(self, *, inverse_lambda: float, test_imbalance_factor: float, aggregation_epochs: int,
                 aggregation_lr: float, aggregation_batch_size: int, view_crop_padding: int, seed: int):
        super().__init__()
        self.inverse_lambda, self.test_imbalance_factor = float(inverse_lambda), float(test_imbalance_factor)
        self.aggregation_epochs, self.aggregation_lr = aggregation_epochs, float(aggregation_lr)
        self.aggregation_batch_size, self.view_crop_padding, self.seed = aggregation_batch_size, view_crop_padding, seed
        # Set from the training labels (set_class_counts); not saved: a resumed run counts them again.
        self.register_buffer("train_counts", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("log_prior", torch.zeros(0), persistent=False)
        self.register_buffer("log_inverse_prior", torch.zeros(0), persistent=False)

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        refuse_rebalancing_stack("sade", run, "its uniform and backward experts already rebalance from the "
                                 "training label counts")

    def set_class_counts(self, counts: torch.Tensor) -> None:
        prior = class_prior(counts)
        self.train_counts = counts.to(self.train_counts.device)
        self.log_prior = torch.log(prior + LOG_EPS).to(self.log_prior.device)
        self.log_inverse_prior = torch.log(inverse_prior(prior) + LOG_EPS).to(self.log_prior.device)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return wrap_head(model, self.name, lambda head: ExpertHeads(head, len(EXPERTS)))

    def expert_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(E, B) per-sample losses of the forward, uniform and backward experts' (E, B, C) logits."""
        if self.log_prior.numel() == 0:
            raise RuntimeError("SADE's class prior is unset: call set_class_counts before training")
        log_prior = self.log_prior.to(logits.dtype)
        return torch.stack([
            soft_cross_entropy(logits[0], targets),
            balanced_softmax_loss(logits[1], targets, log_prior),
            inverse_softmax_loss(logits[2], targets, log_prior, self.log_inverse_prior.to(logits.dtype),
                                 self.inverse_lambda)])

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.expert_losses(logits, targets).sum(dim=0)

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean(dim=0)

    @torch.no_grad()
    def test_report(self, model: nn.Module, test_batches: Iterable, val_batches: Iterable) -> dict[str, Any]:
        """For the whole test split and its forward long-tailed, uniform and backward long-tailed resamplings:
        the accuracy of each expert, of their mean, and of the weights fitted on that set's unlabeled inputs."""
        net = evaluated_network(model)
        heads = next(m for m in net.modules() if isinstance(m, ExpertHeads))
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        try:
            with heads.all_experts():
                logits, labels = expert_logits(net, test_batches, device)
                subsets = self.test_subsets(labels.cpu())
                fits = {name: AggregationFit(len(EXPERTS), self.aggregation_lr, self.aggregation_batch_size)
                        for name in subsets}
                gen = torch.Generator().manual_seed(self.seed)
                augment = BatchAugment(self.view_crop_padding, hflip=False)
                for _ in range(self.aggregation_epochs):
                    if all(fit.stopped for fit in fits.values()):
                        break
                    view_a, view_b = two_view_logits(net, test_batches, device, augment, gen)
                    for name, index in subsets.items():
                        if not fits[name].stopped:
                            fits[name].epoch(view_a[:, index], view_b[:, index], gen)
        finally:
            net.train(was_training)
        report = {name: distribution_report(logits[:, index], labels[index], fits[name].weights)
                  for name, index in subsets.items()}
        # The aggregated accuracies also as top-level numbers, which `regbench compare` and claim cards read.
        flat = {sade_accuracy_key(name): report[name]["acc_aggregated"] for name in SADE_TEST_DISTRIBUTIONS}
        return {"sade_test_agnostic": report, "sade_test_imbalance_factor": self.test_imbalance_factor, **flat}

    def test_subsets(self, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Positions of the whole test split ("all") and of its seeded forward, uniform and backward resamplings."""
        available = torch.bincount(labels, minlength=len(self.train_counts)).tolist()
        counts = distribution_counts(available, self.train_counts.tolist(), self.test_imbalance_factor)
        gen = torch.Generator().manual_seed(self.seed)
        return {"all": torch.arange(len(labels)),
                **{name: select_per_class(labels, per_class, gen) for name, per_class in counts.items()}}


def expert_logits(net: nn.Module, batches: Iterable, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (E, N, C) expert logits of every image and the (N,) labels, on the CPU."""
    logits, labels = [], []
    for images, batch_labels, _ in batches:
        logits.append(net(images.to(device)).float().cpu())
        labels.append(batch_labels.cpu())
    return torch.cat(logits, dim=1), torch.cat(labels)


def two_view_logits(net: nn.Module, batches: Iterable, device: torch.device, augment: BatchAugment,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, N, C) expert logits of two random crops of every image, on the CPU."""
    views: tuple[list, list] = ([], [])
    for images, _, _ in batches:
        padded = augment.prepare(images.to(device))
        for view in views:
            crop_gen = torch.Generator(device=device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=gen)))
            view.append(net(augment(padded, tuple(images.shape[2:]), crop_gen)).float().cpu())
    return torch.cat(views[0], dim=1), torch.cat(views[1], dim=1)


def distribution_report(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> dict[str, Any]:
    def accuracy(prediction: torch.Tensor) -> float | None:
        return float((prediction.argmax(dim=-1) == labels).float().mean()) if len(labels) else None

    weights = weights.cpu()
    return {"images": len(labels), "acc_average": accuracy(logits.mean(dim=0)),
            "acc_aggregated": accuracy(aggregate(logits, weights)),
            "weights": dict(zip(EXPERTS, weights.tolist())),
            "expert_acc": {name: accuracy(logits[k]) for k, name in enumerate(EXPERTS)}}


__all__ = ["AggregationFit", "ExpertHeads", "SADE", "aggregate", "balanced_softmax_loss", "class_prior",
           "distribution_counts", "inverse_prior", "inverse_softmax_loss"]
