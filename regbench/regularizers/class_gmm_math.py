"""The math of per-class Gaussian mixtures over attribute groups (Li et al., "Hierarchical Visual Categories
Modeling", ICCV 2023; official code github.com/Jarvisgivemeasuit/hvcm_ood, `HVCMLoss`, `get_gau.py`,
`ood_maha.py`): the training loss that pulls each attribute group towards its class's center, the Gaussians fitted
per class and group, and the in-distribution score aggregating their Mahalanobis distances.

Shapes: B samples, C classes, K attribute groups (the mixture's components) of d attributes each."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The official loss clamps each sample's per-group divergence to this range (numerical safety).
DIVERGENCE_RANGE = (1e-5, 1e5)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) || softmax(q)) over the last dimension."""
    log_p, log_q = F.log_softmax(p_logits, dim=-1), F.log_softmax(q_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def attribute_loss(attributes: torch.Tensor, weight_logits: torch.Tensor, class_centers: torch.Tensor,
                   weight: float, center_weight: float) -> torch.Tensor:
    """Per-sample (B,) loss from (B, K, d) attributes, (B, K) component-weight logits and the (B, K, d) centers of
    each sample's class, each group's attributes and center read as distributions by a softmax over its d entries:

    - weight * KL(center || attributes), the center held fixed: pulls the attributes to their class's center;
    - weight * center_weight * KL(attributes || center), the attributes held fixed: pulls the center to them;
    - weight * softmax(weight logits) * KL(center || attributes), the divergence held fixed: trains the
      component-weight layer to favour the groups that fit their center best.

    Each group's first two terms are clamped to DIVERGENCE_RANGE before the mean over groups, as the official code
    does (its alpha is `weight`, its beta `weight * center_weight`)."""
    to_center = weight * kl_divergence(class_centers.detach(), attributes)
    to_attributes = weight * center_weight * kl_divergence(attributes.detach(), class_centers)
    divergence = (to_center + to_attributes).clamp(*DIVERGENCE_RANGE).mean(dim=-1)
    weighting = (to_center.detach() * weight_logits.softmax(dim=-1)).mean(dim=-1)
    return divergence + weighting


@dataclass(frozen=True)
class GroupGaussians:
    """Per class and group: (C, K, d) means, (C, K, d, d) precisions (inverse covariances; diagonal matrices for
    diagonal covariances) and a (C,) mask of the classes that had enough samples to be fitted."""

    means: torch.Tensor
    precisions: torch.Tensor
    present: torch.Tensor


def fit_group_gaussians(attributes: torch.Tensor, labels: torch.Tensor, num_classes: int, covariance: str,
                        ridge: float) -> GroupGaussians:
    """Each class's and group's mean and unbiased covariance of the (N, K, d) `attributes` (as `get_gau.py`), in
    float64, with `ridge` times the mean variance added to the diagonal so that a group with fewer samples than
    attributes stays invertible; `covariance` "diagonal" keeps the variances only. A class with fewer than two
    samples has no covariance: it is left out (`present` False)."""
    attributes = attributes.double()
    _, groups, dim = attributes.shape
    means = torch.zeros(num_classes, groups, dim, dtype=torch.float64, device=attributes.device)
    precisions = torch.zeros(num_classes, groups, dim, dim, dtype=torch.float64, device=attributes.device)
    present = torch.zeros(num_classes, dtype=torch.bool, device=attributes.device)
    eye = torch.eye(dim, dtype=torch.float64, device=attributes.device)
    for c in range(num_classes):
        samples = attributes[labels == c]
        if len(samples) < 2:
            continue
        mean = samples.mean(dim=0)
        centered = (samples - mean).transpose(0, 1)  # (K, n, d)
        cov = centered.transpose(1, 2) @ centered / (len(samples) - 1)
        if covariance == "diagonal":
            cov = cov * eye
        scale = cov.diagonal(dim1=-2, dim2=-1).mean(dim=-1).clamp_min(torch.finfo(torch.float64).tiny)
        cov = cov + ridge * scale[:, None, None] * eye
        means[c], precisions[c], present[c] = mean, torch.linalg.inv(cov), True
    return GroupGaussians(means, precisions, present)


def half_mahalanobis(attributes: torch.Tensor, gaussians: GroupGaussians) -> torch.Tensor:
    """(B, C, K): 1/2 (a_k - mu_ck)^T Sigma_ck^-1 (a_k - mu_ck) of every sample's group k under class c."""
    attributes = attributes.double()
    per_class = []
    for mean, precision in zip(gaussians.means, gaussians.precisions):  # class by class: (B, K, d) at a time
        diff = attributes - mean
        per_class.append(0.5 * torch.einsum("bkd,kde,bke->bk", diff, precision, diff))
    return torch.stack(per_class, dim=1)


def in_distribution_score(attributes: torch.Tensor, gaussians: GroupGaussians,
                          component_weights: torch.Tensor) -> torch.Tensor:
    """(B,) the paper's score, higher for more in-distribution: minus the smallest over the fitted classes of the
    component-weighted sum of half Mahalanobis distances, sum_k w_ck 1/2 (a_k - mu_ck)^T Sigma_ck^-1 (a_k - mu_ck)
    (`ood_maha.py`'s `get_maha_score`, whose lower is more in-distribution)."""
    distances = (half_mahalanobis(attributes, gaussians) * component_weights.double()[None]).sum(dim=-1)
    distances = distances.masked_fill(~gaussians.present[None], float("inf"))
    return -distances.min(dim=1).values
