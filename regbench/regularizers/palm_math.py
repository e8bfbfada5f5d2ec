"""PALM's math (Lu et al., "Learning with Mixture of Prototypes for Out-of-Distribution Detection", ICLR 2024), as
pure functions of tensors: the Sinkhorn-Knopp soft assignment of embeddings to prototypes, its top-k pruning to
the sample's own class, the EMA update of the prototypes, the MLE loss, the prototype-level contrastive loss, and
the SSD+ Mahalanobis score that the paper's evaluation reads off the normalized penultimate features.

Prototypes are laid out class by class: prototype j belongs to class j // prototypes_per_class."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def prototype_classes(num_classes: int, per_class: int, device: torch.device | None = None) -> torch.Tensor:
    """(C * K,) the class of each prototype."""
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def sinkhorn(similarity: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """The entropic optimal-transport assignment of B samples to P prototypes from their (B, P) cosine
    similarities: exp(similarity / epsilon) alternately rescaled so that every prototype receives 1/P of the mass
    and every sample sends 1/B, `iterations` times (the sample step last), returned scaled so that each sample's
    row sums to 1."""
    samples, prototypes = similarity.shape
    # Subtracting the maximum changes nothing after the normalizations and keeps exp finite for small epsilon; a
    # prototype or sample whose mass underflows to 0 still stays 0, not NaN.
    plan = torch.exp((similarity - similarity.max()) / epsilon)
    tiny = torch.finfo(plan.dtype).tiny
    plan = plan / plan.sum()
    for _ in range(iterations):
        plan = plan / plan.sum(dim=0, keepdim=True).clamp_min(tiny) / prototypes
        plan = plan / plan.sum(dim=1, keepdim=True).clamp_min(tiny) / samples
    return plan * samples


def own_class_top_k(assignment: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor,
                    top_k: int) -> torch.Tensor:
    """(B, P) bool: for each sample, the `top_k` prototypes of its own class it is assigned most to."""
    own = assignment * (labels[:, None] == classes[None, :])
    chosen = torch.topk(own, top_k, dim=1).indices
    return torch.zeros_like(own, dtype=torch.bool).scatter_(1, chosen, True) & (own > 0)


def assignment_weights(assignment: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The assignment restricted to each sample's `kept` prototypes, each row rescaled to sum to 1."""
    weights = assignment * kept
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)


def updated_prototypes(prototypes: torch.Tensor, embeddings: torch.Tensor, weights: torch.Tensor,
                       momentum: float) -> torch.Tensor:
    """The EMA step: each prototype moves towards the weighted mean of the batch embeddings assigned to it (its
    column of `weights` rescaled to sum to 1; a prototype nobody is assigned to only shrinks) and is put back on the
    unit sphere. Differentiable in `embeddings` (the prototype contrastive loss trains through it)."""
    columns = weights / weights.sum(dim=0, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    return F.normalize(momentum * prototypes + (1 - momentum) * columns.T @ embeddings, dim=1)


def mle_loss(embeddings: torch.Tensor, prototypes: torch.Tensor, weights: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Per-sample (B,) negative log-likelihood of the embedding under its class's mixture of von Mises-Fisher
    prototypes against all prototypes: -(sum_p w_p z.p / tau - log sum_p' exp(z.p' / tau)), with the assignment
    weights on the logits as in the official code; the prototypes are constants here."""
    logits = embeddings @ prototypes.detach().T / temperature
    return torch.logsumexp(logits, dim=1) - (weights * logits).sum(dim=1)


def prototype_contrastive_loss(prototypes: torch.Tensor, classes: torch.Tensor, temperature: float) -> torch.Tensor:
    """Scalar: for each prototype, the mean logit of the other prototypes of its class against the log-sum-exp over
    all other prototypes (logits p_i.p_j / temperature), averaged over prototypes; a class with one prototype has
    no positive, its term is the log-sum-exp alone."""
    prototypes = F.normalize(prototypes, dim=1)
    logits = prototypes @ prototypes.T / temperature
    others = ~torch.eye(len(prototypes), dtype=torch.bool, device=prototypes.device)
    positives = (classes[:, None] == classes[None, :]) & others
    positive_mean = (logits * positives).sum(dim=1) / positives.sum(dim=1).clamp_min(1)
    negative = torch.logsumexp(logits.masked_fill(~others, float("-inf")), dim=1)
    return (negative - positive_mean).mean()


@dataclass(frozen=True)
class FeatureGaussian:
    """SSD+'s class-agnostic Gaussian of the L2-normalized training features, each dimension first standardized
    with the training mean and standard deviation: `mean`, `std` (F,) and the pseudo-inverse `precision` (F, F) of
    the standardized features' covariance."""

    mean: torch.Tensor
    std: torch.Tensor
    precision: torch.Tensor


def fit_feature_gaussian(features: torch.Tensor) -> FeatureGaussian:
    normalized = F.normalize(features.double(), dim=1)
    mean, std = normalized.mean(dim=0), normalized.std(dim=0, unbiased=False)
    standardized = (normalized - mean) / (std + 1e-10)
    covariance = standardized.T @ standardized / len(standardized)  # already centred; the biased estimate
    return FeatureGaussian(mean, std, torch.linalg.pinv(covariance, hermitian=True))


def mahalanobis_score(gaussian: FeatureGaussian, features: torch.Tensor) -> torch.Tensor:
    """(B,) minus the squared Mahalanobis distance of the normalized, standardized features to the training mean:
    higher for more in-distribution."""
    standardized = (F.normalize(features.double(), dim=1) - gaussian.mean) / (gaussian.std + 1e-10)
    return -((standardized @ gaussian.precision) * standardized).sum(dim=1)


__all__ = ["FeatureGaussian", "assignment_weights", "fit_feature_gaussian", "mahalanobis_score", "mle_loss",
           "own_class_top_k", "prototype_classes", "prototype_contrastive_loss", "sinkhorn", "updated_prototypes"]
