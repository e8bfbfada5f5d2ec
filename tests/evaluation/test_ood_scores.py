"""The OOD scores by hand: MSP, max-logit and energy on small logits, the Mahalanobis score on hand-built tied
Gaussians and on samples of known Gaussians, its input preprocessing step, and the out-distribution images
shaped like the in-distribution's."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from regbench.evaluation.mahalanobis import TiedGaussians, preprocessed_score
from regbench.evaluation.ood import max_logit, msp, negative_energy
from regbench.evaluation.ood_data import like_in_distribution

LOGITS = torch.tensor([[0.0, math.log(3.0)], [2.0, -1.0]])


def test_msp_max_logit_and_energy_by_hand():
    assert msp(LOGITS).tolist() == pytest.approx([0.75, math.exp(2) / (math.exp(2) + math.exp(-1))])
    assert max_logit(LOGITS).tolist() == pytest.approx([math.log(3.0), 2.0])
    # -E(x) = T log sum exp(f / T): log(1 + 3) at T = 1; 2 log(1 + sqrt(3)) at T = 2
    assert negative_energy(LOGITS, 1.0)[0].item() == pytest.approx(math.log(4.0))
    assert negative_energy(LOGITS, 2.0)[0].item() == pytest.approx(2 * math.log(1 + math.sqrt(3.0)))


# Two classes in 2-D, means (0, 0) and (10, 0), each with offsets (+-1, 0) and (0, +-2): the within-class scatter is
# diag(2, 8) per class, so the tied covariance is diag(4, 16) / 8 = diag(0.5, 2) and its inverse diag(2, 0.5).
OFFSETS = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
FEATURES = torch.cat([OFFSETS, OFFSETS + torch.tensor([10.0, 0.0])])
LABELS = torch.tensor([0] * 4 + [1] * 4)


def test_mahalanobis_score_on_hand_built_tied_gaussians():
    gaussians = TiedGaussians(FEATURES, LABELS)
    assert gaussians.means.tolist() == [[0.0, 0.0], [10.0, 0.0]]
    assert gaussians.precision.numpy() == pytest.approx(np.diag([2.0, 0.5]))
    points = torch.tensor([[1.0, 1.0], [9.0, 2.0]])
    # (1, 1): 2 * 1 + 0.5 * 1 = 2.5 from class 0; (9, 2): 2 * 1 + 0.5 * 4 = 4 from class 1
    assert gaussians.squared_distances(points)[0].tolist() == pytest.approx([2.5, 2 * 81 + 0.5])
    assert gaussians.score(points).tolist() == pytest.approx([-2.5, -4.0])


def test_mahalanobis_score_recovers_known_gaussians():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0, 0.0], [3.0, -1.0, 2.0], [-2.0, 4.0, 1.0]])
    covariance = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    root = torch.linalg.cholesky(covariance)
    labels = torch.arange(60000) % 3
    features = means[labels] + torch.randn(60000, 3, generator=gen) @ root.T
    gaussians = TiedGaussians(features, labels)
    points = torch.tensor([[1.0, 1.0, 1.0], [-2.0, 3.0, 0.0]])
    diff = points[:, None, :] - means[None]
    exact = torch.einsum("ncd,de,nce->nc", diff, torch.linalg.inv(covariance), diff)
    assert gaussians.squared_distances(points).numpy() == pytest.approx(exact.numpy(), rel=0.03)
    assert gaussians.score(points).numpy() == pytest.approx(-exact.min(dim=1).values.numpy(), rel=0.03)


def test_input_preprocessing_steps_against_the_gradient_of_the_closest_class_distance():
    gaussians = TiedGaussians(FEATURES, LABELS)
    point = torch.tensor([[1.0, 1.0]])
    identity = lambda images: images  # noqa: E731  (the features are the inputs themselves)
    assert preprocessed_score(gaussians, identity, point, 0.0).tolist() == pytest.approx([-2.5])
    # d_0 = 2 x^2 + 0.5 y^2 has gradient (4, 1) at (1, 1): the step moves both coordinates down by epsilon, and
    # the score becomes -2.5 (1 - epsilon)^2.
    assert preprocessed_score(gaussians, identity, point, 0.1).tolist() == pytest.approx([-2.5 * 0.9 ** 2])


def test_out_distribution_images_are_shaped_and_normalized_like_the_in_distribution():
    colour = torch.tensor([[[[0, 255], [255, 0]], [[255, 255], [255, 255]], [[0, 0], [0, 0]]]], dtype=torch.uint8)
    # 3 channels averaged (pixels 1/3, 2/3, 2/3, 1/3), 2x2 -> 1x1 by the antialiased (averaging) resize: 0.5
    grey = like_in_distribution(colour, (1, 1, 1), torch.tensor([0.25]), torch.tensor([0.5]))
    assert grey.shape == (1, 1, 1, 1) and grey.item() == pytest.approx((0.5 - 0.25) / 0.5)
    # grey repeated into 3 channels, each normalized with its own mean and std
    rgb = like_in_distribution(torch.full((1, 1, 2, 2), 51, dtype=torch.uint8), (3, 2, 2),
                               torch.tensor([0.0, 0.2, 0.1]), torch.tensor([1.0, 0.5, 0.1]))
    assert rgb[0, :, 0, 0].numpy() == pytest.approx(np.array([0.2, 0.0, 1.0]), abs=1e-6)
