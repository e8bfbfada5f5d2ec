"""Long-tailed training sets and the two ways to rebalance them.

Profiles (Cao et al., 2019, LDAM; Cui et al., 2019, class-balanced loss), with imbalance factor rho = n_max/n_min:
- exponential: n_c = floor(n_max * rho^(-c/(C-1)));
- step: the last round(mu*C) classes keep floor(n_max / rho) samples, the others n_max.
Rebalancing ("Upsample or Upweight? Balanced Training on Heavily Imbalanced Datasets", 2024): a target class
distribution p_c ~ n_c^(1/tau) (tau=1: natural frequencies, tau=inf: uniform), reached either by sampling
(upsample: sample i drawn with probability p_{y_i} / n_{y_i}) or by loss weights (upweight: w_c = p_c N / n_c, so
the mean weight over the training set is 1 and both spend the same number of steps).
Cooldown (the same paper's proposal): upsample at a high temperature first, for fast convergence, then lower it
(`tau_end`) from `switch_epoch` on, so the rare classes are repeated less once they would be overfitted.
SMOTE (smote.py) rebalances by synthesizing minority samples instead. The profiles' counts are in class_counts.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch


def select_per_class(labels: torch.Tensor, counts: list[int], gen: torch.Generator) -> torch.Tensor:
    """Sorted positions of a seeded random subset with counts[c] samples of each class c."""
    kept = []
    for c, count in enumerate(counts):
        members = torch.nonzero(labels == c).squeeze(1)
        kept.append(members[torch.randperm(len(members), generator=gen)[:count]])
    return torch.cat(kept).sort().values


def class_probabilities(counts: torch.Tensor, tau: float) -> torch.Tensor:
    """p_c ~ n_c^(1/tau) over the classes present (n_c > 0)."""
    counts = counts.double()
    powered = torch.where(counts > 0, counts.pow(1.0 / tau), torch.zeros_like(counts))
    return powered / powered.sum()


def upsample_weights(labels: torch.Tensor, num_classes: int, tau: float) -> torch.Tensor:
    """Per-sample sampling probabilities p_{y_i} / n_{y_i}: each class c is drawn with total probability p_c."""
    counts = torch.bincount(labels, minlength=num_classes)
    per_class = class_probabilities(counts, tau) / counts.clamp_min(1)
    return per_class[labels]


@dataclass(frozen=True)
class UpsampleWeights:
    """Per-sample sampling weights for each epoch: `before` until `switch_epoch`, `after` from it on (Cooldown);
    without a switch, `before` every epoch."""

    before: torch.Tensor
    after: torch.Tensor
    switch_epoch: int | None = None

    @classmethod
    def for_labels(cls, labels: torch.Tensor, num_classes: int, balance: Mapping[str, Any]) -> "UpsampleWeights":
        """p_{y_i} / n_{y_i} at balance.tau, and at balance.tau_end from balance.switch_epoch on."""
        before = upsample_weights(labels, num_classes, balance["tau"])
        switch_epoch = balance["switch_epoch"]
        after = upsample_weights(labels, num_classes, balance["tau_end"]) if switch_epoch is not None else before
        return cls(before, after, switch_epoch)

    def at(self, epoch: int) -> torch.Tensor:
        return self.after if self.switch_epoch is not None and epoch >= self.switch_epoch else self.before

    def to(self, device: torch.device) -> "UpsampleWeights":
        return UpsampleWeights(self.before.to(device), self.after.to(device), self.switch_epoch)


def upweight_class_weights(labels: torch.Tensor, num_classes: int, tau: float) -> torch.Tensor:
    """Per-class loss weights w_c = p_c N / n_c (0 for absent classes); their mean over the samples is 1."""
    counts = torch.bincount(labels, minlength=num_classes)
    return (class_probabilities(counts, tau) * len(labels) / counts.clamp_min(1)).float()
