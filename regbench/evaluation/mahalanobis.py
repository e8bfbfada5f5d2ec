"""The Mahalanobis confidence score (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018, sec. 2): class-conditional Gaussians with one shared (tied)
covariance fitted on the training features; a sample's score is minus its squared Mahalanobis distance to the
closest class mean (eq. 2), optionally after the input preprocessing step of eq. 4."""
from __future__ import annotations

from typing import Callable

import torch


class TiedGaussians:
    """Class means and the pseudo-inverse of the shared covariance (the maximum-likelihood estimate: the
    within-class scatter divided by the number of samples), in float64. A class absent from the training labels
    has no Gaussian."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        features = features.double()
        present = torch.unique(labels)
        self.means = torch.stack([features[labels == c].mean(dim=0) for c in present.tolist()])
        centred = features - self.means[torch.searchsorted(present, labels)]
        covariance = centred.T @ centred / len(features)
        self.precision = torch.linalg.pinv(covariance, hermitian=True)

    def squared_distances(self, features: torch.Tensor) -> torch.Tensor:
        """(N, classes present): (f - mu_c)^T Sigma^+ (f - mu_c)."""
        diff = features.double()[:, None, :] - self.means.to(features.device)[None]
        return torch.einsum("ncd,de,nce->nc", diff, self.precision.to(features.device), diff)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Eq. 2: minus the squared distance to the closest class mean (higher: more in-distribution)."""
        return -self.squared_distances(features).min(dim=1).values


def preprocessed_score(gaussians: TiedGaussians, features_of: Callable[[torch.Tensor], torch.Tensor],
                       images: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Eq. 4: each input moved by epsilon * sign of the gradient that raises its score against its closest class
    (the distance to that class shrinks), then scored again. epsilon 0 scores the inputs as they are."""
    if epsilon == 0:
        with torch.no_grad():
            return gaussians.score(features_of(images))
    with torch.enable_grad():
        inputs = images.detach().clone().requires_grad_(True)
        closest = gaussians.squared_distances(features_of(inputs)).min(dim=1).values
        # the gradient of the inputs only: the model's parameter gradients stay as they are
        (gradient,) = torch.autograd.grad(closest.sum(), inputs)
    with torch.no_grad():
        return gaussians.score(features_of(images - epsilon * gradient.sign()))
