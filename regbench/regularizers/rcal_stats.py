"""RCAL's math on representations (Zhang, Zhao, Yao, Yuan & Huang, "When Noisy Labels Meet Long Tail Dilemmas: A
Representation Calibration Method", ICCV 2023): the contrastive loss of the representation phase, per-class Gaussian
estimates with the outliers (likely mislabeled points) trimmed by the local outlier factor, the tail classes'
statistics calibrated from their nearest head classes, and sampling from the calibrated Gaussians."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample (B,) SimCLR loss of two views' (B, D) projections: each of the 2B views is classified among the
    other 2B - 1 by cosine similarity / temperature, its own other view the positive; a sample's loss is the mean
    of its two views'."""
    batch = first.shape[0]
    z = F.normalize(torch.cat([first, second]).float(), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))  # a view is never its own candidate
    positive = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    per_view = F.cross_entropy(similarity, positive, reduction="none")
    return (per_view[:batch] + per_view[batch:]) / 2


def inliers(features: torch.Tensor, neighbors: int) -> torch.Tensor:
    """Boolean (N,) mask of the points that the local outlier factor (Breunig et al., 2000; scikit-learn's
    threshold) keeps; with fewer than 3 points there is no neighbourhood to compare with, and all are kept."""
    count = features.shape[0]
    if count < 3:
        return torch.ones(count, dtype=torch.bool)
    from sklearn.neighbors import LocalOutlierFactor  # seconds to import: only runs that trim outliers pay

    lof = LocalOutlierFactor(n_neighbors=min(neighbors, count - 1))
    return torch.from_numpy(lof.fit_predict(features.double().cpu().numpy()) == 1)


@dataclass(frozen=True)
class ClassGaussians:
    """Per-class Gaussian estimates: (C, D) means, (C, D, D) covariances, and which classes had any points."""

    means: torch.Tensor
    covariances: torch.Tensor
    present: torch.Tensor


def class_gaussians(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    lof_neighbors: int) -> tuple[ClassGaussians, torch.Tensor]:
    """Mean and (unbiased) covariance of each class's representations after LOF trimming, and the (N,) mask of the
    points kept. A class with one point kept has a zero covariance (its calibration borrows one)."""
    dim = features.shape[1]
    features = features.double()
    means = torch.zeros(num_classes, dim, dtype=torch.float64)
    covariances = torch.zeros(num_classes, dim, dim, dtype=torch.float64)
    present = torch.zeros(num_classes, dtype=torch.bool)
    kept = torch.zeros(features.shape[0], dtype=torch.bool)
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) == 0:
            continue
        mask = inliers(features[members], lof_neighbors)
        kept[members[mask]] = True
        points = features[members[mask]]
        means[c] = points.mean(dim=0)
        if len(points) > 1:
            covariances[c] = torch.cov(points.T).reshape(dim, dim)
        present[c] = True
    return ClassGaussians(means, covariances, present), kept


def tail_classes(counts: torch.Tensor, tail_count_fraction: float) -> torch.Tensor:
    """Boolean (C,) mask of the classes with fewer training labels than `tail_count_fraction` x the largest class's."""
    return counts.double() < tail_count_fraction * counts.max().double()


def calibrate(stats: ClassGaussians, tail: torch.Tensor, neighbors: int, ridge: float) -> ClassGaussians:
    """Each tail class's statistics borrowed from the `neighbors` head classes whose means are nearest its own
    (Euclidean): mean = (mu_t + sum_j mu_j) / (k + 1), covariance = (Sigma_t + sum_j Sigma_j) / (k + 1) + ridge * I.
    Head classes keep their own. A tail class without points, or a run without head classes, keeps what it has."""
    head = torch.nonzero(~tail & stats.present).flatten()
    means, covariances = stats.means.clone(), stats.covariances.clone()
    if len(head) == 0:
        return stats
    k = min(neighbors, len(head))
    identity = torch.eye(means.shape[1], dtype=means.dtype)
    for c in torch.nonzero(tail & stats.present).flatten().tolist():
        distances = torch.cdist(stats.means[c][None], stats.means[head])[0]
        nearest = head[torch.topk(distances, k, largest=False).indices]
        means[c] = (stats.means[c] + stats.means[nearest].sum(dim=0)) / (k + 1)
        covariances[c] = (stats.covariances[c] + stats.covariances[nearest].sum(dim=0)) / (k + 1) + ridge * identity
    return ClassGaussians(means, covariances, stats.present)


def covariance_roots(covariances: torch.Tensor) -> torch.Tensor:
    """(C, D, D) symmetric square roots S with S S^T = Sigma, by eigendecomposition (eigenvalues rounded below zero
    clamped): unlike a Cholesky factor it exists for the singular covariances of classes with few points."""
    values, vectors = torch.linalg.eigh(covariances)
    return vectors @ torch.diag_embed(values.clamp(min=0).sqrt()) @ vectors.transpose(-1, -2)


def sample_representations(means: torch.Tensor, roots: torch.Tensor, classes: torch.Tensor, per_class: int,
                           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` draws z = mu_c + S_c eps, eps ~ N(0, I), for each class in `classes`: (n, D) points, (n,) labels."""
    labels = classes.repeat_interleave(per_class)
    noise = torch.randn(len(labels), means.shape[1], generator=gen, dtype=means.dtype, device=gen.device)
    noise = noise.to(means.device)
    return means[labels] + torch.einsum("nij,nj->ni", roots[labels], noise), labels


__all__ = ["ClassGaussians", "calibrate", "class_gaussians", "covariance_roots", "inliers", "nt_xent",
           "sample_representations", "tail_classes"]
