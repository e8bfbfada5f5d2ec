"""The Mahalanobis feature ensemble (Lee et al. 2018, sec. 2.2): each layer's features read by forward hooks and
averaged over space (against a hand computation on a tiny convnet), the layer weights against scikit-learn's
LogisticRegression, the FGSM pseudo-OOD step by hand, and the ensemble beating the penultimate layer alone where
only an earlier layer separates in from out."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from regbench.backbones import build_backbone
from regbench.backbones.base import Classifier
from regbench.evaluation.detection_metrics import auroc
from regbench.evaluation.mahalanobis import TiedGaussians
from regbench.evaluation.mahalanobis_ensemble import (LayerGaussians, fgsm_images, fit_ensemble_weights,
                                                      layer_features_function, pooled)
from regbench.evaluation.ood import fit_split

identity = lambda images: images  # noqa: E731  (the networks here take the images as they are)


def test_feature_maps_are_averaged_over_space_and_features_kept():
    maps = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]]])
    assert pooled(maps).tolist() == [[2.5, 2.0]]
    assert pooled(torch.tensor([[1.0, -1.0]])).tolist() == [[1.0, -1.0]]


def test_every_stage_but_the_last_is_hooked_then_the_penultimate_features():
    torch.manual_seed(0)
    model = build_backbone({"name": "convnet", "widths": [2, 3, 4]}, {"name": "batchnorm"}, (1, 8, 8), 5).eval()
    images = torch.randn(6, 1, 8, 8)
    layers = layer_features_function(model, "all", identity)(images)
    # by hand: the plain layers stage by stage, each stage's output averaged over its 4x4 and 2x2 maps
    with torch.no_grad():
        stage1 = model.features[:model.stage_ends[0] + 1](images)
        stage2 = model.features[model.stage_ends[0] + 1:model.stage_ends[1] + 1](stage1)
    assert stage1.shape == (6, 2, 4, 4) and stage2.shape == (6, 3, 2, 2)
    assert [tuple(layer.shape) for layer in layers] == [(6, 2), (6, 3), (6, 4)]
    assert torch.allclose(layers[0], stage1.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(layers[1], stage2.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(layers[2], model.forward_features(images), atol=1e-6)
    assert all(not stage._forward_hooks for blocks in model.stage_blocks() for stage in blocks)  # hooks removed
    (penultimate,) = layer_features_function(model, "penultimate", identity)(images)
    assert torch.equal(penultimate, layers[2])


def test_the_layer_weights_are_scikit_learns_logistic_regression():
    gen = torch.Generator().manual_seed(0)
    in_scores = torch.randn(120, 3, generator=gen) * torch.tensor([1.0, 50.0, 0.01]) + torch.tensor([1.0, 30.0, 0.0])
    out_scores = torch.randn(80, 3, generator=gen) * torch.tensor([1.0, 50.0, 0.01])
    l2 = 0.01
    weights = fit_ensemble_weights(in_scores, out_scores, l2)
    scores = torch.cat([in_scores, out_scores]).double()
    labels = np.r_[np.ones(120), np.zeros(80)]
    scaler = StandardScaler().fit(scores.numpy())
    reference = LogisticRegression(C=2 / (l2 * len(labels)), tol=1e-12, max_iter=10000).fit(
        scaler.transform(scores.numpy()), labels)
    expected = reference.decision_function(scaler.transform(scores.numpy()))
    assert weights.score(scores).numpy() == pytest.approx(expected, abs=1e-5)
    coefficients = weights.probe.weight[1] - weights.probe.weight[0]
    assert coefficients.numpy() == pytest.approx(reference.coef_[0], abs=1e-5)


def test_fgsm_steps_along_the_sign_of_the_cross_entropy_gradient():
    # f(x) = x (two logits): dCE/dx = softmax(x) - onehot(y); at x = (0, 0), y = 0 that is (-1/2, 1/2)
    images = torch.tensor([[0.0, 0.0], [1.0, 3.0]])
    labels = torch.tensor([0, 1])
    step = torch.tensor([0.1, 0.2])
    # second image: softmax(1, 3) - (0, 1) = (+, -)
    assert fgsm_images(identity, images, labels, step).flatten().tolist() == pytest.approx([-0.1, 0.2, 1.1, 2.8])


class TwoStages(Classifier):
    """Stage 1 passes both channels on; the penultimate features see channel 1 only."""

    def __init__(self):
        super().__init__()
        self.stage1, self.stage2 = nn.Identity(), nn.Identity()
        self.num_features = 1
        self.head = nn.Linear(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled(self.stage2(self.stage1(x)[:, 1:]))

    def stage_blocks(self) -> list[list[nn.Module]]:
        return [[self.stage1], [self.stage2]]


def constant_images(channel0: torch.Tensor, channel1: torch.Tensor) -> torch.Tensor:
    return torch.stack([channel0, channel1], dim=1)[:, :, None, None].expand(-1, -1, 2, 2).contiguous()


def in_distribution(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n) % 2
    return constant_images(torch.randn(n, generator=gen), 4.0 * labels - 2 + torch.randn(n, generator=gen)), labels


@pytest.mark.parametrize("epsilon", [0.0, 0.01])
def test_the_ensemble_finds_the_early_layer_that_alone_separates_in_from_out(epsilon):
    gen = torch.Generator().manual_seed(0)
    model = TwoStages().eval()
    train_images, train_labels = in_distribution(400, gen)
    ensemble = LayerGaussians(layer_features_function(model, "all", identity), [(train_images, train_labels)])
    assert [tuple(g.means.shape) for g in ensemble.gaussians] == [(2, 2), (2, 1)]
    # out-distribution: channel 0 moved far away, channel 1 (all the penultimate layer sees) as in-distribution
    def out_distribution(n: int) -> torch.Tensor:
        return constant_images(6.0 + torch.randn(n, generator=gen), 4.0 * (torch.arange(n) % 2) - 2
                               + torch.randn(n, generator=gen))
    validation, _ = in_distribution(200, gen)
    fit_images, scored_out = fit_split(out_distribution(400), 200, 0)
    weights = fit_ensemble_weights(ensemble.scores(validation, epsilon), ensemble.scores(fit_images, epsilon), 1e-3)
    test_in, _ = in_distribution(200, gen)
    in_layers, out_layers = ensemble.scores(test_in, epsilon), ensemble.scores(scored_out, epsilon)
    penultimate = TiedGaussians(model.forward_features(train_images), train_labels)
    single = auroc(penultimate.score(model.forward_features(test_in)).numpy(),
                   penultimate.score(model.forward_features(scored_out)).numpy())
    combined = auroc(weights.score(in_layers).numpy(), weights.score(out_layers).numpy())
    assert single < 0.65 and combined > 0.99 and combined >= single


def test_the_ood_validation_images_are_drawn_apart_from_the_scored_ones():
    images = torch.arange(10.0)[:, None]
    fit, scored = fit_split(images, 4, seed=3)
    assert len(fit) == 4 and len(scored) == 6
    assert sorted(torch.cat([fit, scored]).flatten().tolist()) == list(range(10))
    assert fit.flatten().tolist() == sorted(fit.flatten().tolist())
    assert torch.equal(fit_split(images, 4, seed=3)[0], fit)  # seeded
