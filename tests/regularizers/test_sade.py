"""SADE: each expert's loss against a hand computation, distinct expert gradients, the mean prediction, the test-time
aggregation objective on a hand case, the test distributions, and the metrics.json report."""
import math

import pytest
import torch

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.regularizers import create_regularizer
from regbench.regularizers.base import soft_cross_entropy
from regbench.regularizers.sade import (AggregationFit, ExpertHeads, aggregate, balanced_softmax_loss,
                                        distribution_counts, inverse_prior, inverse_softmax_loss)

DEFAULTS = dict(inverse_lambda=2.0, test_imbalance_factor=4.0, aggregation_epochs=2, aggregation_lr=0.1,
                aggregation_batch_size=16, view_crop_padding=1)


def sade(**changes):
    return create_regularizer("sade", **{**DEFAULTS, **changes})


def hand_ce(adjusted: list[float], target: int) -> float:
    return -(adjusted[target] - math.log(sum(math.exp(z) for z in adjusted)))


def test_inverse_prior_gives_the_values_in_reversed_frequency_order():
    assert torch.allclose(inverse_prior(torch.tensor([0.5, 0.3, 0.2])), torch.tensor([0.2, 0.3, 0.5]))
    # Not sorted by class: the most frequent class (1) gets the smallest value, the least frequent (0) the largest.
    assert torch.allclose(inverse_prior(torch.tensor([0.2, 0.5, 0.3])), torch.tensor([0.5, 0.2, 0.3]))


def test_balanced_softmax_is_cross_entropy_on_logits_plus_log_prior():
    logits, prior = torch.tensor([[1.0, 0.0]]), [0.75, 0.25]
    target = torch.tensor([[0.0, 1.0]])
    loss = balanced_softmax_loss(logits, target, torch.tensor(prior).log())
    # -log(0.25 e^0 / (0.75 e^1 + 0.25 e^0))
    assert loss.item() == pytest.approx(math.log(0.75 * math.e + 0.25) - math.log(0.25), rel=1e-6)
    assert loss.item() == pytest.approx(hand_ce([1 + math.log(0.75), math.log(0.25)], 1), rel=1e-6)


def test_inverse_softmax_is_cross_entropy_on_logits_plus_log_prior_minus_lambda_log_inverse_prior():
    logits, prior, lam = torch.tensor([[1.0, 0.0], [0.5, 2.0]]), [0.75, 0.25], 2.0
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    inverse = inverse_prior(torch.tensor(prior))
    assert torch.allclose(inverse, torch.tensor([0.25, 0.75]))
    loss = inverse_softmax_loss(logits, targets, torch.tensor(prior).log(), inverse.log(), lam)
    expected = [hand_ce([v0 + math.log(0.75) - lam * math.log(0.25), v1 + math.log(0.25) - lam * math.log(0.75)], y)
                for (v0, v1), y in (((1.0, 0.0), 0), ((0.5, 2.0), 1))]
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)


def test_task_loss_sums_the_three_experts_losses_with_the_prior_of_the_class_counts():
    reg = sade(inverse_lambda=1.5)
    reg.set_class_counts(torch.tensor([60, 30, 10]))
    prior = torch.tensor([0.6, 0.3, 0.1])
    logits = torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.eye(3)[torch.tensor([0, 1, 2, 2])]
    expected = (soft_cross_entropy(logits[0], targets) + balanced_softmax_loss(logits[1], targets, prior.log())
                + inverse_softmax_loss(logits[2], targets, prior.log(), torch.tensor([0.1, 0.3, 0.6]).log(), 1.5))
    assert torch.allclose(reg.task_loss(logits, targets), expected, atol=1e-5)
    assert torch.allclose(reg.reduce_logits(logits), logits.mean(dim=0))


def wrapped_mlp(reg, classes: int = 3):
    torch.manual_seed(0)
    return reg.wrap_model(build_backbone({"name": "mlp", "hidden": [8]}, {"name": "none"}, (1, 2, 2), classes))


def test_the_three_experts_get_different_gradients_from_identical_weights():
    reg = sade()
    reg.set_class_counts(torch.tensor([60, 30, 10]))
    model = wrapped_mlp(reg).train()
    experts = model.head.experts
    assert not torch.equal(experts[0].weight, experts[1].weight)  # independently initialized
    for expert in experts[1:]:
        expert.load_state_dict(experts[0].state_dict())  # same weights: only the losses differ
    images, labels = torch.randn(16, 1, 2, 2), torch.randint(0, 3, (16,))
    logits = model(images)
    assert logits.shape == (3, 16, 3)
    reg.task_loss(logits, torch.eye(3)[labels]).mean().backward()
    grads = [expert.weight.grad for expert in experts]
    for a in range(3):
        assert grads[a].abs().sum() > 0
        for b in range(a + 1, 3):
            assert not torch.allclose(grads[a], grads[b]), (a, b)


def test_evaluation_predicts_the_mean_of_the_experts_which_equal_weights_aggregate_to():
    model = wrapped_mlp(sade()).eval()
    images = torch.randn(5, 1, 2, 2)
    with torch.no_grad():
        features = model.forward_features(images)
        per_expert = torch.stack([expert(features) for expert in model.head.experts])
        assert torch.allclose(model(images), per_expert.mean(dim=0), atol=1e-6)
        assert torch.allclose(aggregate(per_expert, torch.full((3,), 1 / 3)), per_expert.mean(dim=0), atol=1e-6)
        with model.head.all_experts():
            assert torch.allclose(model(images), per_expert)
        assert model(images).shape == (5, 3)  # back to the mean after the block


def test_aggregate_weights_each_experts_logits():
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[4.0, 4.0]]])
    assert torch.allclose(aggregate(logits, torch.tensor([0.5, 0.25, 0.25])), torch.tensor([[1.5, 1.5]]))


def test_aggregation_moves_weight_to_the_expert_whose_two_views_agree():
    # Expert 0 predicts the same class on both views; experts 1 and 2 move their prediction between the views.
    n, c = 32, 4
    labels = torch.arange(n) % c

    def predicts(shift: int) -> torch.Tensor:
        return 3.0 * torch.eye(c)[(labels + shift) % c]

    view_a = torch.stack([predicts(0), predicts(1), predicts(2)])
    view_b = torch.stack([predicts(0), predicts(2), predicts(3)])
    fit = AggregationFit(3, lr=0.1, batch_size=8)
    assert torch.allclose(fit.weights, torch.full((3,), 1 / 3))
    objective = []
    for _ in range(5):
        weights = fit.weights
        a, b = aggregate(view_a, weights).softmax(-1), aggregate(view_b, weights).softmax(-1)
        objective.append(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item())
        fit.epoch(view_a, view_b, torch.Generator().manual_seed(0))
    assert fit.weights[0] > 0.4 and fit.weights[1] < 1 / 3 and fit.weights[2] < 1 / 3
    assert fit.weights.sum().item() == pytest.approx(1.0)
    assert objective == sorted(objective) and objective[-1] > objective[0]  # the similarity it maximizes rises


def test_aggregation_stops_once_an_expert_weight_falls_below_the_official_floor():
    fit = AggregationFit(3, lr=0.1, batch_size=8)
    fit.omega.data = torch.tensor([3.0, 0.0, 0.0])
    view = torch.randn(3, 8, 4)
    fit.epoch(view, view, torch.Generator().manual_seed(0))
    assert fit.stopped and fit.weights.min() < 0.05


def test_test_distributions_follow_the_training_frequencies_forward_and_reversed_backward():
    # n = 5 (the smallest class); exponential profile with rho 4 over 3 classes: 5, floor(5 / 2), floor(5 / 4).
    counts = distribution_counts([5, 6, 7], train_counts=[10, 1, 5], factor=4.0)
    assert counts == {"forward": [5, 1, 2], "uniform": [5, 5, 5], "backward": [1, 5, 2]}


def test_the_report_resamples_the_test_split_and_fits_weights_per_distribution():
    reg = sade(test_imbalance_factor=3.0)
    reg.set_class_counts(torch.tensor([90, 30, 10]))
    model = wrapped_mlp(reg)
    images, labels = torch.randn(60, 1, 2, 2), torch.arange(60) % 3
    batches = [(images[:32], labels[:32], None), (images[32:], labels[32:], None)]
    report = reg.test_report(model, batches, batches)
    assert model.training and not model.head.split  # the report leaves the network as it was
    assert report["sade_test_imbalance_factor"] == 3.0
    sections = report["sade_test_agnostic"]
    for name in ("forward", "uniform", "backward"):  # top-level, for `regbench compare` and the claim card
        assert report[f"sade_{name}_acc"] == sections[name]["acc_aggregated"]
    assert list(sections) == ["all", "forward", "uniform", "backward"]
    # 20 test images per class: forward 20, floor(20 / sqrt(3)) = 11, floor(20 / 3) = 6; backward reversed.
    assert [sections[name]["images"] for name in sections] == [60, 37, 60, 37]
    model.eval()
    with torch.no_grad():
        plain = (model(images).argmax(-1) == labels).float().mean().item()
    assert sections["all"]["acc_average"] == pytest.approx(plain)
    for section in sections.values():
        assert sum(section["weights"].values()) == pytest.approx(1.0)
        assert list(section["expert_acc"]) == ["forward", "uniform", "backward"]


def test_without_aggregation_epochs_the_weights_stay_equal():
    reg = sade(aggregation_epochs=0)
    reg.set_class_counts(torch.tensor([90, 30, 10]))
    model = wrapped_mlp(reg)
    images, labels = torch.randn(30, 1, 2, 2), torch.arange(30) % 3
    sections = reg.test_report(model, [(images, labels, None)], [])["sade_test_agnostic"]
    for section in sections.values():
        assert list(section["weights"].values()) == pytest.approx([1 / 3] * 3)
        assert section["acc_aggregated"] == pytest.approx(section["acc_average"])


@pytest.mark.parametrize("key,value,message", [
    ("inverse_lambda", -1.0, "must be a number >= 0"),
    ("test_imbalance_factor", 0.5, "must be a number >= 1"),
    ("aggregation_epochs", 1.5, "must be an integer >= 0"),
    ("aggregation_lr", 0, "must be a number > 0"),
    ("aggregation_batch_size", 0, "must be an integer > 0"),
    ("view_crop_padding", 0, "must be an integer >= 1"),
])
def test_bad_values_are_refused_naming_the_key(key, value, message):
    with pytest.raises(UserError, match=f"regularizer.sade.{key}={value!r} is invalid: {message}"):
        sade(**{key: value})


def test_expert_heads_copy_the_head_it_wraps():
    head = torch.nn.Linear(4, 2)
    heads = ExpertHeads(head, 3)
    assert heads.experts[0] is head and len(heads.experts) == 3
