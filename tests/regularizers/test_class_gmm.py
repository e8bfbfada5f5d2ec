"""class_gmm (HVCM): the half Mahalanobis terms against scipy's Gaussian log-density, the aggregated score, the
fitted Gaussians against numpy's covariances, the loss and its gradients against hand computations, the component
weights' moving average, the score ordering an in-cluster point above a far one, and the head in the network (the
training forward's attributes kept, each image fitted once, the state in the model's checkpoint)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import multivariate_normal

from regbench.backbones import build_backbone
from regbench.regularizers import create_regularizer
from regbench.regularizers.class_gmm import gmm_head
from regbench.regularizers.class_gmm_math import (GroupGaussians, attribute_loss, fit_group_gaussians,
                                                   half_mahalanobis, in_distribution_score)

DEFAULTS = dict(components=2, attribute_dim=6, bottleneck_dim=5, covariance="full", weight=1.0, center_weight=0.1,
                weight_momentum=0.5, covariance_ridge=0.0)
CLASSES = 3


def class_gmm(**changes):
    return create_regularizer("class_gmm", **{**DEFAULTS, **changes})


def wrapped_model(reg):
    torch.manual_seed(0)
    return reg.wrap_model(build_backbone({"name": "convnet", "widths": [4]}, {"name": "none"}, (1, 6, 6), CLASSES))


def random_spd(gen: torch.Generator, dim: int) -> torch.Tensor:
    root = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    return root @ root.T + 0.5 * torch.eye(dim, dtype=torch.float64)


def test_half_mahalanobis_is_the_log_density_drop_from_the_mean_under_scipy():
    gen = torch.Generator().manual_seed(0)
    classes, groups, dim = 2, 3, 4
    means = torch.randn(classes, groups, dim, generator=gen, dtype=torch.float64)
    covariances = torch.stack([torch.stack([random_spd(gen, dim) for _ in range(groups)]) for _ in range(classes)])
    gaussians = GroupGaussians(means, torch.linalg.inv(covariances), torch.ones(classes, dtype=torch.bool))
    points = torch.randn(5, groups, dim, generator=gen, dtype=torch.float64)
    got = half_mahalanobis(points, gaussians)
    for b in range(5):
        for c in range(classes):
            for k in range(groups):
                density = multivariate_normal(means[c, k].numpy(), covariances[c, k].numpy())
                expected = density.logpdf(means[c, k].numpy()) - density.logpdf(points[b, k].numpy())
                assert got[b, c, k].item() == pytest.approx(expected, rel=1e-9)


def test_the_score_is_minus_the_smallest_weighted_class_distance():
    # One attribute per group, unit variances: class 0 centered at (0, 0), class 1 at (2, 4); weights (0.25, 0.75)
    # and (0.5, 0.5). The point (1, 1): class 0 gives 0.25 * 0.5 + 0.75 * 0.5 = 0.5, class 1 gives
    # 0.5 * 0.5 * 1 + 0.5 * 0.5 * 9 = 2.5; the score is -0.5.
    means = torch.tensor([[[0.0], [0.0]], [[2.0], [4.0]]], dtype=torch.float64)
    gaussians = GroupGaussians(means, torch.ones(2, 2, 1, 1, dtype=torch.float64), torch.ones(2, dtype=torch.bool))
    weights = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    point = torch.tensor([[[1.0], [1.0]]])
    assert in_distribution_score(point, gaussians, weights).item() == pytest.approx(-0.5)
    # Class 0 unfitted: only class 1 counts.
    partial = GroupGaussians(means, gaussians.precisions, torch.tensor([False, True]))
    assert in_distribution_score(point, partial, weights).item() == pytest.approx(-2.5)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_the_fitted_gaussians_are_each_class_and_groups_mean_and_unbiased_covariance(covariance):
    gen = torch.Generator().manual_seed(1)
    attributes = torch.randn(40, 2, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])
    labels = torch.arange(40) % 3
    labels[labels == 2] = 0  # class 2 has no samples: unfitted
    fitted = fit_group_gaussians(attributes, labels, 3, covariance, ridge=0.0)
    assert fitted.present.tolist() == [True, True, False]
    for c in range(2):
        for k in range(2):
            samples = attributes[labels == c, k].numpy()
            expected = np.cov(samples, rowvar=False)
            if covariance == "diagonal":
                expected = np.diag(np.diag(expected))
            np.testing.assert_allclose(fitted.means[c, k].numpy(), samples.mean(axis=0), rtol=1e-12)
            np.testing.assert_allclose(torch.linalg.inv(fitted.precisions[c, k]).numpy(), expected, rtol=1e-9)


def test_the_ridge_keeps_a_group_with_fewer_samples_than_attributes_invertible():
    attributes = torch.tensor([[[0.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]], dtype=torch.float64)  # rank-one covariance
    fitted = fit_group_gaussians(attributes, torch.tensor([0, 0]), 1, "full", ridge=1e-6)
    covariance = torch.linalg.inv(fitted.precisions[0, 0])
    # Covariance [[.5, .5, 0], [.5, .5, 0], [0, 0, 0]], mean variance 1/3: the diagonal gains 1e-6 / 3.
    expected = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(covariance, expected + 1e-6 / 3 * torch.eye(3, dtype=torch.float64), atol=1e-9)


def test_the_loss_and_its_gradients_match_the_hand_computation():
    attributes = torch.tensor([[[0.2, -0.1, 0.4], [0.0, 0.3, -0.2]]], requires_grad=True)
    centers = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]], requires_grad=True)
    weight_logits = torch.tensor([[0.3, -0.3]], requires_grad=True)
    weight, center_weight = 2.0, 0.1
    loss = attribute_loss(attributes, weight_logits, centers, weight, center_weight)

    a, c = attributes.detach().softmax(-1).numpy()[0], centers.detach().softmax(-1).numpy()[0]
    to_center = (c * np.log(c / a)).sum(-1)  # KL(center || attributes) per group
    to_attributes = (a * np.log(a / c)).sum(-1)  # KL(attributes || center)
    pi = np.exp([0.3, -0.3]) / np.exp([0.3, -0.3]).sum()
    expected = (weight * to_center + weight * center_weight * to_attributes).mean() + (weight * to_center * pi).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    loss.sum().backward()
    # d/da KL(c || softmax(a)) = softmax(a) - c; d/dc KL(a || softmax(c)) = softmax(c) - a; each over the 2 groups.
    np.testing.assert_allclose(attributes.grad[0].numpy(), weight * (a - c) / 2, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(centers.grad[0].numpy(), weight * center_weight * (c - a) / 2, rtol=1e-4, atol=1e-7)
    divergences = weight * to_center
    np.testing.assert_allclose(weight_logits.grad[0].numpy(), pi * (divergences - (pi * divergences).sum()) / 2,
                               rtol=1e-4, atol=1e-7)


def test_a_group_matching_its_center_contributes_the_clamped_floor():
    attributes = torch.tensor([[[0.1, 0.2]]], requires_grad=True)
    loss = attribute_loss(attributes, torch.zeros(1, 1), attributes.detach().clone(), 1.0, 0.1)
    assert loss.item() == pytest.approx(1e-5)
    loss.sum().backward()
    assert attributes.grad.abs().sum() == 0


def test_the_component_weights_follow_each_batch_class_by_a_moving_average():
    reg = class_gmm(weight_momentum=0.5)
    head = gmm_head(wrapped_model(reg))
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]]))
    reg.update_component_weights(head, logits, torch.tensor([0, 0, 1]))
    # Class 0: 0.5 * mean((0.8, 0.2), (0.4, 0.6)) + 0.5 * (0.5, 0.5); class 1: 0.5 * (0.5, 0.5) + 0.5 * (0.5, 0.5);
    # class 2 (not in the batch) stays uniform.
    expected = torch.tensor([[0.55, 0.45], [0.5, 0.5], [0.5, 0.5]])
    assert torch.allclose(head.component_weights, expected)


def test_the_score_orders_an_in_cluster_point_above_a_far_point():
    gen = torch.Generator().manual_seed(2)
    centers = torch.tensor([[[0.0, 0.0], [1.0, -1.0]], [[3.0, 3.0], [-2.0, 2.0]]], dtype=torch.float64)
    labels = torch.arange(200) % 2
    attributes = centers[labels] + 0.3 * torch.randn(200, 2, 2, generator=gen, dtype=torch.float64)
    fitted = fit_group_gaussians(attributes, labels, 2, "full", ridge=0.0)
    weights = torch.full((2, 2), 0.5)
    near = centers[1:2] + 0.1
    far = torch.full((1, 2, 2), 10.0, dtype=torch.float64)
    assert in_distribution_score(near, fitted, weights) > in_distribution_score(far, fitted, weights)


def training_batches():
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(12, 1, 6, 6, generator=gen)
    labels = torch.arange(12) % CLASSES
    return images, labels, torch.arange(12)


def test_the_head_keeps_the_training_forwards_attributes_and_leaves_the_logits():
    reg = class_gmm()
    model = wrapped_model(reg)
    head = gmm_head(model)
    images, labels, index = training_batches()
    targets = F.one_hot(labels, CLASSES).float()
    reg.mix_batch(images, targets, index)
    logits = model(images)
    with torch.no_grad():
        features = model.forward_features(images)
        assert torch.allclose(logits, head.classifier(features))
        expected_attributes, _ = head.project(features)
    model(images.flip(0))  # another technique's extra pass does not replace the kept attributes
    assert torch.allclose(head.kept[0], expected_attributes)
    assert head.kept[0].shape == (12, 2, 3) and head.kept[0].abs().max() <= 1 + 1e-6  # unit vectors' products
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    loss = reg.loss(per_sample, logits, targets, index, model)
    expected = per_sample + attribute_loss(expected_attributes, head.weight_layer(F.normalize(
        head.bottleneck(features), dim=-1)), head.centers[labels], 1.0, 0.1)
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.mean().backward()
    assert head.centers.grad.abs().sum() > 0 and head.bottleneck.weight.grad.abs().sum() > 0
    assert head.kept is None


def test_the_fit_counts_each_training_image_once_and_survives_a_checkpoint():
    reg = class_gmm()
    model = wrapped_model(reg)
    images, labels, index = training_batches()
    # An upsampled epoch's repeats, across batches (images 2-7) and within one (images 0 and 1, met there first).
    twice = torch.tensor([0, 1, 0, 1])
    repeated = [(images[2:], labels[2:], index[2:]), (images[2:8], labels[2:8], index[2:8]),
                (images[twice], labels[twice], index[twice])]
    reg.fit(model, repeated)
    head = gmm_head(model)
    with torch.no_grad():
        attributes, _ = head.project(model.forward_features(images))
    expected = fit_group_gaussians(attributes, labels, CLASSES, "full", 0.0)
    # Other batch compositions change the float32 attributes in their last bits; 4 images per class make
    # ill-conditioned covariances, so the precisions and scores are compared to a relative 1e-3.
    assert torch.allclose(head.means, expected.means, rtol=1e-5, atol=1e-7)
    assert torch.allclose(head.precisions, expected.precisions, rtol=1e-3)
    score = reg.ood_score(model, images)
    assert torch.allclose(score, in_distribution_score(attributes, expected, head.component_weights), rtol=1e-3)

    fresh_reg = class_gmm()
    fresh = wrapped_model(fresh_reg)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(gmm_head(fresh).precisions, head.precisions) and gmm_head(fresh).present.all()
    assert torch.allclose(fresh_reg.ood_score(fresh, images), score)


def test_a_score_before_any_fit_is_refused():
    reg = class_gmm()
    model = wrapped_model(reg)
    with pytest.raises(RuntimeError, match="no fitted class Gaussians"):
        reg.ood_score(model, training_batches()[0])
