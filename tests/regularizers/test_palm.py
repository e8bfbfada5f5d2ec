"""PALM: the Sinkhorn assignment against a plain numpy transcription of the algorithm and a hand case, the top-k
pruning, the EMA prototype update, the MLE and prototype contrastive losses and the SSD+ Mahalanobis score on hand
cases, the training step through the hooks, and the prototypes and score surviving a checkpoint."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.regularizers import create_regularizer
from regbench.regularizers.palm import embedding_head
from regbench.regularizers.palm_math import (assignment_weights, fit_feature_gaussian, mahalanobis_score, mle_loss,
                                             own_class_top_k, prototype_classes, prototype_contrastive_loss,
                                             sinkhorn, updated_prototypes)
from regbench.runshape import RunShape
from regbench.specs.run_checks import regularizer_run_check

DEFAULTS = dict(prototypes=3, top_k=2, embedding_dim=4, temperature=0.1, prototype_temperature=0.5, momentum=0.9,
                sinkhorn_epsilon=0.05, sinkhorn_iterations=3, weight=1.0, contrastive_weight=1.0)
CLASSES = 3


def palm(**changes):
    return create_regularizer("palm", **{**DEFAULTS, **changes})


def numpy_sinkhorn(similarity: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """The algorithm as the paper's appendix and SwAV state it, prototypes x samples: normalize the whole plan, then
    alternately make each prototype's row sum to 1/K and each sample's column sum to 1/B; scale columns to 1."""
    plan = np.exp(similarity.T / epsilon)
    plan /= plan.sum()
    prototypes, samples = plan.shape
    for _ in range(iterations):
        plan /= plan.sum(axis=1, keepdims=True) * prototypes
        plan /= plan.sum(axis=0, keepdims=True) * samples
    return (plan * samples).T


def test_sinkhorn_matches_a_plain_numpy_transcription():
    gen = torch.Generator().manual_seed(0)
    similarity = F.normalize(torch.randn(7, 5, generator=gen, dtype=torch.float64), dim=1) \
        @ F.normalize(torch.randn(9, 5, generator=gen, dtype=torch.float64), dim=1).T
    for epsilon, iterations in ((0.05, 3), (0.5, 1), (0.2, 10)):
        expected = numpy_sinkhorn(similarity.numpy(), epsilon, iterations)
        assert np.allclose(sinkhorn(similarity, epsilon, iterations).numpy(), expected, rtol=1e-10)


def test_sinkhorn_marginals_each_sample_sends_one_and_prototypes_share_equally():
    gen = torch.Generator().manual_seed(1)
    similarity = torch.rand(6, 4, generator=gen, dtype=torch.float64)
    plan = sinkhorn(similarity, 0.1, 500)
    assert torch.allclose(plan.sum(dim=1), torch.ones(6, dtype=torch.float64))
    # Converged: every prototype receives B / P of the (row-normalized) mass.
    assert torch.allclose(plan.sum(dim=0), torch.full((4,), 6 / 4, dtype=torch.float64), atol=1e-8)


def test_sinkhorn_stays_finite_where_a_prototype_s_mass_underflows():
    similarity = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    plan = sinkhorn(similarity, 0.01, 3)  # exp(-200) is 0 in float32: the second prototype receives nothing
    assert torch.isfinite(plan).all() and torch.allclose(plan, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_sinkhorn_hand_case_of_an_already_balanced_plan():
    # exp([[1, 0], [0, 1]]) is doubly balanced: each sample keeps e / (1 + e) on its own prototype.
    plan = sinkhorn(torch.eye(2, dtype=torch.float64), 1.0, 3)
    own = math.e / (1 + math.e)
    assert torch.allclose(plan, torch.tensor([[own, 1 - own], [1 - own, own]], dtype=torch.float64))


def test_the_assignment_is_pruned_to_the_top_k_prototypes_of_the_own_class():
    classes = prototype_classes(2, 3)
    assert classes.tolist() == [0, 0, 0, 1, 1, 1]
    assignment = torch.tensor([[0.1, 0.3, 0.2, 0.9, 0.0, 0.0],
                               [0.5, 0.0, 0.0, 0.1, 0.1, 0.3]])
    kept = own_class_top_k(assignment, torch.tensor([0, 1]), classes, 2)
    assert kept.tolist() == [[False, True, True, False, False, False],
                             [False, False, False, True, False, True]] or \
        kept.tolist() == [[False, True, True, False, False, False],
                          [False, False, False, False, True, True]]  # the tie of 0.1s may go either way
    weights = assignment_weights(assignment, kept)
    assert torch.allclose(weights[0], torch.tensor([0.0, 0.6, 0.4, 0.0, 0.0, 0.0]))
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))


def test_the_ema_update_moves_each_prototype_to_its_assigned_mean_on_the_sphere():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    embeddings = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    # Prototype 0 takes both samples (weights 1 and 3), prototype 1 nobody, prototype 2 only the second sample.
    weights = torch.tensor([[0.25, 0.0, 0.0], [0.75, 0.0, 0.25]])
    new = updated_prototypes(prototypes, embeddings, weights, momentum=0.5)
    mean0 = 0.25 * embeddings[0] + 0.75 * embeddings[1]  # (0.45, 0.85)
    assert torch.allclose(new[0], F.normalize(0.5 * prototypes[0] + 0.5 * mean0, dim=0))
    assert torch.allclose(new[0], F.normalize(torch.tensor([0.725, 0.425]), dim=0))
    assert torch.allclose(new[1], prototypes[1])  # unassigned: it only shrinks, and is renormalized
    assert torch.allclose(new[2], F.normalize(torch.tensor([-0.2, 0.4]), dim=0))
    assert torch.allclose(new.norm(dim=1), torch.ones(3))


def test_the_mle_loss_hand_case():
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weights = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    loss = mle_loss(embeddings, prototypes, weights, temperature=0.5)
    # Logits z.p / 0.5: sample 0 (2, 0), sample 1 (1.2, 1.6).
    expected = [math.log(math.exp(2) + 1) - 2, math.log(math.exp(1.2) + math.exp(1.6)) - 1.4]
    assert torch.allclose(loss, torch.tensor(expected))


def test_the_prototype_contrastive_loss_hand_case():
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # Classes (0, 0, 1, 1): each prototype's positive is at cosine 0, its negatives at 0 and -1 (temperature 1).
    loss = prototype_contrastive_loss(prototypes, torch.tensor([0, 0, 1, 1]), 1.0)
    assert torch.isclose(loss, torch.tensor(math.log(2 + math.exp(-1))))
    # Classes (0, 1, 0, 1): the positive is the opposite prototype, at -1 / 0.5.
    loss = prototype_contrastive_loss(prototypes, torch.tensor([0, 1, 0, 1]), 0.5)
    assert torch.isclose(loss, torch.tensor(math.log(2 + math.exp(-2)) + 2))


def test_one_prototype_per_class_has_no_positive_term():
    prototypes = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    loss = prototype_contrastive_loss(prototypes, torch.tensor([0, 1]), 1.0)
    assert torch.isclose(loss, torch.tensor(0.6))  # log exp(0.6): the one other prototype, for both


def test_the_mahalanobis_score_hand_case():
    train = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, -5.0]])
    gaussian = fit_feature_gaussian(train)
    # Normalized: the four axis directions, mean 0, std sqrt(1/2); standardized covariance I.
    assert torch.allclose(gaussian.precision, torch.eye(2, dtype=torch.float64))
    score = mahalanobis_score(gaussian, torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.isclose(score[0], torch.tensor(-2.0, dtype=torch.float64))  # (0.36 + 0.64) / 0.5
    assert score[1] == 0  # the zero feature normalizes to 0, the training mean


def test_the_mahalanobis_score_is_the_plain_one_of_the_normalized_features_at_full_rank():
    gen = torch.Generator().manual_seed(2)
    train, test = torch.randn(200, 3, generator=gen) + 1, torch.randn(5, 3, generator=gen)
    normalized = F.normalize(train.double(), dim=1).numpy()
    inverse = np.linalg.inv(np.cov(normalized.T, bias=True))
    centred = F.normalize(test.double(), dim=1).numpy() - normalized.mean(axis=0)
    expected = -np.einsum("bi,ij,bj->b", centred, inverse, centred)
    assert np.allclose(mahalanobis_score(fit_feature_gaussian(train), test).numpy(), expected)


def wrapped_model(reg):
    torch.manual_seed(0)
    return reg.wrap_model(build_backbone({"name": "convnet", "widths": [4]}, {"name": "none"}, (1, 6, 6), CLASSES))


def batches(count=3, size=12):
    gen = torch.Generator().manual_seed(1)
    return [(torch.rand(size, 1, 6, 6, generator=gen), torch.arange(size) % CLASSES,
             torch.arange(b * size, (b + 1) * size)) for b in range(count)]


def test_wrapping_starts_unit_prototypes_per_class():
    reg = palm()
    wrapped_model(reg)
    assert reg.prototypes.shape == (CLASSES * 3, 4)
    assert torch.allclose(reg.prototypes.norm(dim=1), torch.ones(CLASSES * 3))
    assert reg.classes.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_training_step_updates_the_prototypes_and_trains_the_projection():
    reg = palm()
    model = wrapped_model(reg)
    before = reg.prototypes.clone()
    images, labels, index = batches()[0]
    logits = model(images)
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    loss = reg.loss(per_sample, logits, F.one_hot(labels, CLASSES).float(), index, model)
    assert loss.shape == per_sample.shape and (loss > per_sample).all()
    assert not torch.allclose(reg.prototypes, before) and not reg.prototypes.requires_grad
    assert torch.allclose(reg.prototypes.norm(dim=1), torch.ones(CLASSES * 3))
    loss.mean().backward()
    assert embedding_head(model).projector[0].weight.grad.abs().sum() > 0


def test_the_step_losses_follow_the_official_order():
    reg = palm(momentum=0.5)
    wrapped_model(reg)
    gen = torch.Generator().manual_seed(3)
    embeddings = F.normalize(torch.randn(6, 4, generator=gen), dim=1).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    old = reg.prototypes.clone()
    mle, contrastive = reg.step_losses(embeddings, labels)
    assignment = sinkhorn(embeddings.detach() @ old.T, 0.05, 3)
    kept = own_class_top_k(assignment, labels, reg.classes, 2)
    new = updated_prototypes(old, embeddings.detach(), assignment_weights(assignment, kept), 0.5)
    assert torch.allclose(reg.prototypes, new)
    fresh = sinkhorn(embeddings.detach() @ new.T, 0.05, 3)
    assert torch.allclose(mle, mle_loss(embeddings.detach(), new, assignment_weights(fresh, kept), 0.1))
    assert torch.isclose(contrastive, prototype_contrastive_loss(new, reg.classes, 0.5))
    # The contrastive loss trains the embeddings through the EMA update.
    (gradient,) = torch.autograd.grad(contrastive, embeddings)
    assert gradient.abs().sum() > 0


def test_the_score_is_fitted_to_the_training_features_and_survives_a_checkpoint():
    reg = palm()
    model = wrapped_model(reg)
    reg.fit_score(model, batches())
    assert model.training and embedding_head(model).features is None
    model.eval()
    with torch.no_grad():
        features = torch.cat([model.forward_features(images) for images, _, _ in batches()])
        images = batches()[0][0]
        expected = mahalanobis_score(fit_feature_gaussian(features), model.forward_features(images))
        assert torch.allclose(reg.ood_score(model, images), expected)
    clone = palm()
    wrapped_model(clone)
    clone.load_state_dict(reg.state_dict())
    for name in ("prototypes", "feature_mean", "feature_std", "precision"):
        assert torch.equal(getattr(clone, name), getattr(reg, name))


def test_top_k_above_the_prototypes_is_refused():
    with pytest.raises(Exception, match=r"top_k=4 is invalid: must be at most prototypes=3"):
        palm(top_k=4)


def test_several_devices_are_refused():
    shape = RunShape(image_shape=(1, 8, 8), train_images=100, batch_size=10, world_size=2, max_epochs=1)
    with pytest.raises(UserError, match="regularizer=palm trains on one device, not 2"):
        regularizer_run_check("palm", DEFAULTS, shape)
