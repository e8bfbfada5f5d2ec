"""RCAL: the contrastive loss and the tail calibration against hand computations, the LOF-trimmed Gaussian ignoring an
injected outlier, the moments of the sampled representations, the two phases' losses through the hooks, and the
statistics and frozen network surviving a checkpoint."""
import math

import pytest
import torch
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.regularizers import create_regularizer
from regbench.regularizers.rcal import representation_head
from regbench.regularizers.rcal_stats import (ClassGaussians, calibrate, class_gaussians, covariance_roots, nt_xent,
                                              sample_representations, tail_classes)

DEFAULTS = dict(representation_epochs=1, temperature=0.5, projection_dim=4, view_crop_padding=1, view_hflip=False,
                lof_neighbors=5, tail_count_fraction=0.5, calibration_neighbors=1, covariance_ridge=0.01,
                samples_per_class=4, sampled_loss_weight=1.0, individual_weight=0.1)
CLASSES = 3


def rcal(**changes):
    return create_regularizer("rcal", **{**DEFAULTS, **changes})


def wrapped_model(reg):
    torch.manual_seed(0)
    return reg.wrap_model(build_backbone({"name": "convnet", "widths": [4]}, {"name": "none"}, (1, 6, 6), CLASSES))


def test_nt_xent_of_identical_orthogonal_views_matches_the_hand_value():
    views = torch.eye(2)
    # Each view: its twin at cosine 1 against two orthogonal candidates at 0 (temperature 1).
    expected = math.log(2 + math.e) - 1
    assert torch.allclose(nt_xent(views, views, 1.0), torch.full((2,), expected))


def test_nt_xent_hand_case_with_a_temperature():
    first, second = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    # Views z0=e1, z1=e1, z2=e2, z3=e1 (normalized), similarities / 0.5. Sample 0: z0 against z1, z2 (its positive,
    # at 0) and z3, then z2 against z0 (positive), z1, z3, all at 0. Sample 1: z1 and z3 each with its positive at 2
    # among one other at 2 and z2 at 0.
    e2 = math.exp(2.0)
    sample0 = (math.log(1 + 2 * e2) + math.log(3)) / 2
    sample1 = math.log(2 * e2 + 1) - 2
    assert torch.allclose(nt_xent(first, second, 0.5), torch.tensor([sample0, sample1]), atol=1e-6)


def test_tail_classes_are_those_below_the_fraction_of_the_largest():
    assert tail_classes(torch.tensor([100, 60, 49, 10]), 0.5).tolist() == [False, False, True, True]
    assert not tail_classes(torch.tensor([100, 60, 10]), 0.0).any()


def stats_2d() -> ClassGaussians:
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    covariances = torch.stack([torch.diag(torch.tensor(d, dtype=torch.float64))
                               for d in ([1.0, 2.0], [5.0, 5.0], [0.5, 0.5])])
    return ClassGaussians(means, covariances, torch.ones(3, dtype=torch.bool))


def test_a_tail_class_borrows_from_its_nearest_head_class():
    tail = torch.tensor([False, False, True])
    out = calibrate(stats_2d(), tail, neighbors=1, ridge=0.1)
    # Class 0's mean (0, 0) is nearer (1, 1) than class 1's (10, 0): (mu_2 + mu_0) / 2, (Sigma_2 + Sigma_0) / 2 + 0.1 I.
    assert torch.allclose(out.means[2], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(out.covariances[2], torch.diag(torch.tensor([0.85, 1.35], dtype=torch.float64)))
    assert torch.equal(out.means[:2], stats_2d().means[:2])  # head classes keep their own
    assert torch.equal(out.covariances[:2], stats_2d().covariances[:2])


def test_a_tail_class_with_two_neighbours_averages_all_three():
    out = calibrate(stats_2d(), torch.tensor([False, False, True]), neighbors=2, ridge=0.0)
    assert torch.allclose(out.means[2], torch.tensor([11 / 3, 1 / 3], dtype=torch.float64))
    assert torch.allclose(out.covariances[2], torch.diag(torch.tensor([6.5 / 3, 7.5 / 3], dtype=torch.float64)))


def test_the_lof_trimmed_gaussian_ignores_an_injected_outlier():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    features = torch.cat([clean, torch.tensor([[40.0, 40.0]], dtype=torch.float64), clean + 20])
    labels = torch.tensor([0] * 41 + [1] * 40)
    stats, kept = class_gaussians(features, labels, 2, lof_neighbors=10)
    assert not kept[40]  # the outlier
    points = features[kept & (labels == 0)]
    assert torch.allclose(stats.means[0], points.mean(dim=0))
    assert torch.allclose(stats.covariances[0], torch.cov(points.T))
    # The plain mean moves by 40/41 per coordinate; the trimmed one stays near the clean points' mean.
    assert (stats.means[0] - clean.mean(dim=0)).abs().max() < 0.1
    assert (features[:41].mean(dim=0) - clean.mean(dim=0)).abs().min() > 0.9
    assert stats.present.all()


def test_samples_from_the_calibrated_gaussian_have_its_moments():
    means = torch.tensor([[1.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    covariances = torch.tensor([[[2.0, 0.6], [0.6, 1.0]], [[1.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    roots = covariance_roots(covariances)
    assert torch.allclose(roots @ roots.transpose(-1, -2), covariances, atol=1e-9)  # also the singular one
    points, labels = sample_representations(means, roots, torch.tensor([0, 1]), 100_000,
                                            torch.Generator().manual_seed(0))
    assert labels.tolist() == [0] * 100_000 + [1] * 100_000
    for c in range(2):
        drawn = points[labels == c]
        assert torch.allclose(drawn.mean(dim=0), means[c], atol=0.02)
        assert torch.allclose(torch.cov(drawn.T), covariances[c], atol=0.03)


def batches(count=4, size=12):
    gen = torch.Generator().manual_seed(1)
    out = []
    for b in range(count):
        images = torch.rand(size, 1, 6, 6, generator=gen)
        labels = torch.arange(size) % CLASSES
        out.append((images, labels, torch.arange(b * size, (b + 1) * size)))
    return out


def calibrated_pair(**changes):
    reg = rcal(**changes)
    model = wrapped_model(reg)
    reg.set_class_counts(torch.tensor([20, 16, 4]))
    reg.calibrate_from(model, batches())
    return reg, model


def step_loss(reg, model, images, labels, index):
    targets = F.one_hot(labels, CLASSES).float()
    images, targets = reg.mix_batch(images, targets, index)
    logits = model(images)
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    return per_sample, reg.loss(per_sample, logits, targets, index, model)


def test_phase_one_trains_the_representation_without_labels():
    reg = rcal()
    model = wrapped_model(reg)
    images, labels, index = batches()[0]
    per_sample, loss = step_loss(reg, model, images, labels, index)
    assert loss.shape == per_sample.shape and not torch.allclose(loss, per_sample)
    loss.mean().backward()
    head = representation_head(model)
    assert head.classifier.weight.grad is None  # the classifier waits for phase 2
    assert head.projector[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "head" not in n)
    # The labels do not enter: other labels give the same loss (same views from the same seed).
    reg2 = rcal()
    model2 = wrapped_model(reg2)
    _, relabelled = step_loss(reg2, model2, images, (labels + 1) % CLASSES, index)
    assert torch.allclose(loss, relabelled)


def test_phase_two_adds_the_sampled_cross_entropy_and_the_distance_to_the_frozen_representation():
    reg, model = calibrated_pair(samples_per_class=2000)
    assert reg.calibrated and reg.sampled_classes.tolist() == [0, 1, 2]
    assert not any(p.requires_grad for p in reg.frozen.parameters())
    images, labels, index = batches()[0]
    model.eval()  # the convnet has no dropout/BN here, but the frozen copy is compared in eval mode
    per_sample, loss = step_loss(reg, model, images, labels, index)
    # At the switch the network equals its frozen copy: the distance term is 0, the rest is one batch-wide term.
    extra = loss - per_sample
    assert torch.allclose(extra, extra[0].expand_as(extra))
    head = representation_head(model)
    with torch.no_grad():
        points, sampled = sample_representations(reg.means, reg.roots, reg.sampled_classes, 2000,
                                                 torch.Generator().manual_seed(3))
        expected = F.cross_entropy(head.classifier(points), sampled)
    assert extra[0].item() == pytest.approx(expected.item(), rel=0.05)


def test_the_distance_term_pulls_each_representation_to_the_frozen_one():
    reg, model = calibrated_pair(sampled_loss_weight=0.0, individual_weight=0.1)
    with torch.no_grad():  # move the network away from its frozen copy
        for p in model.parameters():
            p.add_(0.1)
    images, labels, index = batches()[0]
    model.eval()
    per_sample, loss = step_loss(reg, model, images, labels, index)
    with torch.no_grad():
        model(images)
        moved = representation_head(model).features
        reg.frozen(images)
        distance = (moved - representation_head(reg.frozen).features).pow(2).sum(dim=1)
    assert distance.min() > 0
    assert torch.allclose(loss - per_sample, 0.1 * distance, rtol=1e-5)


def test_the_statistics_and_the_frozen_network_survive_a_checkpoint():
    reg, model = calibrated_pair()
    state = reg.state_dict()
    assert any(key.startswith("frozen.") for key in state)
    fresh = rcal()
    wrapped_model(fresh)
    fresh.load_state_dict(state)
    assert fresh.calibrated and torch.equal(fresh.means, reg.means) and torch.equal(fresh.roots, reg.roots)
    for a, b in zip(fresh.frozen.parameters(), reg.frozen.parameters()):
        assert torch.equal(a, b)
    # A phase-1 checkpoint (the best one, say) loaded after the switch drops the phase-2 state.
    reg.load_state_dict(rcal().state_dict())
    assert not reg.calibrated and reg.frozen is None


def test_lof_trims_points_labelled_into_the_wrong_cluster():
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [8.0, 0.0]], dtype=torch.float64)
    features = torch.cat([torch.randn(60, 2, generator=gen, dtype=torch.float64) * 0.5 + centers[c]
                          for c in (0, 1)])
    labels = torch.tensor([0] * 60 + [1] * 60)
    flipped = torch.tensor([0, 1, 2, 60, 61])  # mislabeled: they sit in the other class's cluster
    labels[flipped] = 1 - labels[flipped]
    _, kept = class_gaussians(features, labels, 2, lof_neighbors=20)
    assert not kept[flipped].any()
    clean = torch.ones_like(kept)
    clean[flipped] = False
    assert kept[clean].double().mean() > 0.9  # few clean points go with them
