"""STORM (Heck et al., AAAI 2025) against hand-computed cases, the standard library's normal overlap, a loop-by-loop
recomputation of the official features, torch's own BatchNorm1d, and a closed-form look-ahead meta-gradient."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.regularizers import build_regularizers, create_regularizer
from regbench.regularizers.base import soft_cross_entropy
from regbench.regularizers.meta_rescaling import (
    INIT_STD, NUM_FEATURES, STD_FLOOR, ClassRescalers, functional_logits, gaussian_kl, group_mean_std,
    lookahead_parameters, normal_overlap, pass_statistics, sample_features)


def storm(**params):
    return create_regularizer("storm", **{"meta_lr": 1e-2, "dropout_rounds": 2, **params})


# --- the features -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m1,s1,m2,s2", [(2.4, 1.6, 3.2, 2.0), (0.0, 1.0, 0.5, 1.0), (1.0, 0.1, 1.0, 3.0),
                                         (5.0, 0.2, -1.0, 0.3), (0.3, 1e-8, 0.4, 0.5)])
def test_overlap_matches_the_standard_library(m1, s1, m2, s2):
    got = normal_overlap(*(torch.tensor([v]) for v in (m1, s1, m2, s2)))
    assert got.item() == pytest.approx(NormalDist(m1, s1).overlap(NormalDist(m2, s2)), abs=1e-6)


def test_gaussian_kl_by_hand_and_zero_for_a_zero_width():
    # KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1)/2 - 1/2 = 2 - log 2
    kl = gaussian_kl(torch.tensor([1.0, 1.0, 0.5]), torch.tensor([2.0, 0.0, 1.0]),
                     torch.tensor([0.0, 0.0, 0.5]), torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(kl, torch.tensor([2.0 - math.log(2.0), 0.0, 0.0]))


def test_group_statistics_are_per_group_with_a_floor_for_singletons():
    values = torch.tensor([1.0, 2.0, 4.0, 10.0, 7.0])
    groups = torch.tensor([0, 0, 0, 3, 1])
    means, stds = group_mean_std(values, groups, num_groups=4)
    torch.testing.assert_close(means, torch.tensor([7 / 3, 7 / 3, 7 / 3, 10.0, 7.0]))
    group_std = float(np.std([1.0, 2.0, 4.0], ddof=1))
    torch.testing.assert_close(stds, torch.tensor([group_std] * 3 + [STD_FLOOR, STD_FLOOR]))


def test_pass_statistics_by_hand():
    labels = torch.tensor([0, 1])
    # Three passes: sample 0 predicted 0, 1, 0 (majority agrees); sample 1 predicted 0, 0, 1 (majority disagrees).
    logits = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [3.0, 0.0]], [[1.0, 0.0], [0.0, 2.0]]])
    losses = torch.tensor([[0.1, 0.5], [0.3, 0.7], [0.2, 0.9]])
    loss_mean, loss_std, prob_mean, prob_std, agreement = pass_statistics(losses, logits, labels)
    torch.testing.assert_close(loss_mean, torch.tensor([0.2, 0.7]))
    torch.testing.assert_close(loss_std, torch.tensor([0.1, 0.2]))
    top = torch.sigmoid(torch.tensor([[2.0, 1.0], [1.0, 3.0], [1.0, 2.0]]))  # max softmax of two logits
    torch.testing.assert_close(prob_mean, top.mean(0))
    torch.testing.assert_close(prob_std, top.std(0))
    assert agreement.tolist() == [True, False]
    # Two passes that split: the training pass (the first) decides; one pass: no spread.
    assert pass_statistics(losses[:2], logits[:2], labels)[4].tolist() == [True, False]
    assert pass_statistics(losses[:1], logits[:1], labels)[1].tolist() == [0.0, 0.0]


def reference_features(losses: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The official feature set recomputed sample by sample and group by group, with the standard library's
    NormalDist for the overlap."""
    rounds, batch, _ = logits.shape
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    preds, top = logits.argmax(-1), probs.max(-1)
    std = lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else 0.0  # noqa: E731
    stats = {"loss_mean": [], "loss_std": [], "prob_mean": [], "prob_std": [], "agree": []}
    for i in range(batch):
        stats["loss_mean"].append(losses[:, i].mean())
        stats["loss_std"].append(std(losses[:, i]))
        stats["prob_mean"].append(top[:, i].mean())
        stats["prob_std"].append(std(top[:, i]))
        votes = int((preds[:, i] == labels[i]).sum())
        stats["agree"].append(preds[0, i] == labels[i] if 2 * votes == rounds else 2 * votes > rounds)
    group = [(labels[i], stats["agree"][i]) for i in range(batch)]
    members = lambda i: [j for j in range(batch) if group[j] == group[i]]  # noqa: E731
    group_std = lambda x: std(x) if len(x) > 1 else STD_FLOOR  # noqa: E731
    for i in range(batch):
        mean_of_means = np.mean([stats["loss_mean"][j] for j in members(i)])
        mean_of_stds = np.mean([stats["loss_std"][j] for j in members(i)])
        m, s = stats["loss_mean"][i], stats["loss_std"][i]
        kl = 0.0 if s == 0 or mean_of_stds == 0 else (
            math.log(mean_of_stds / s) + (s ** 2 + (m - mean_of_means) ** 2) / (2 * mean_of_stds ** 2) - 0.5)
        stats.setdefault("kl", []).append(kl)
        stats.setdefault("ovl", []).append(NormalDist(m, max(s, STD_FLOOR)).overlap(
            NormalDist(mean_of_means, max(mean_of_stds, STD_FLOOR))))
    rows = []
    for i in range(batch):
        row = []
        for name in ("loss_mean", "loss_std", "prob_mean", "prob_std", "kl", "ovl"):
            values = [stats[name][j] for j in members(i)]
            row += [stats[name][i], np.mean(values), group_std(values)]
        rows.append(row + [float(stats["agree"][i])])
    return np.array(rows)


def test_features_match_a_sample_by_sample_recomputation():
    gen = torch.Generator().manual_seed(0)
    rounds, batch, classes = 3, 24, 3
    logits = torch.randn(rounds, batch, classes, generator=gen) * 2
    labels = torch.randint(0, classes, (batch,), generator=gen)
    losses = nn.functional.cross_entropy(logits.reshape(-1, classes), labels.repeat(rounds),
                                         reduction="none").reshape(rounds, batch)
    got = sample_features(losses, logits, labels, classes)
    assert got.shape == (batch, NUM_FEATURES)
    expected = reference_features(losses.numpy(), logits.numpy(), labels.numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)


# --- the rescaler -------------------------------------------------------------------------------------------------
def test_rescalers_equal_the_official_layer_stack_per_class_and_weights_lie_in_0_1():
    classes, batch = 3, 16
    rescalers = ClassRescalers(classes, seed=0)
    with torch.no_grad():  # non-zero biases, so that the bias terms are checked too
        rescalers.hidden_bias.normal_(0, 0.1)
        rescalers.out_bias.normal_(0, 0.1)
    features = torch.randn(batch, NUM_FEATURES, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(batch) % classes
    weights = rescalers(features, labels)
    for c in range(classes):
        first, second = nn.Linear(NUM_FEATURES, NUM_FEATURES), nn.Linear(NUM_FEATURES, 2)
        with torch.no_grad():
            first.weight.copy_(rescalers.hidden_weight[c]), first.bias.copy_(rescalers.hidden_bias[c])
            second.weight.copy_(rescalers.out_weight[c]), second.bias.copy_(rescalers.out_bias[c])
        official = nn.Sequential(first, nn.BatchNorm1d(NUM_FEATURES, affine=False), nn.ReLU(), second,
                                 nn.BatchNorm1d(2, affine=False), nn.Softmax(dim=1)).train()
        expected = official(features)[:, 1]
        torch.testing.assert_close(weights[labels == c], expected[labels == c])
    assert ((weights > 0) & (weights < 1)).all()
    # The initialization of the official code: N(0, 0.02^2) weights, zero biases.
    fresh = ClassRescalers(classes, seed=0)
    assert fresh.hidden_weight.std().item() == pytest.approx(INIT_STD, rel=0.2)
    assert not fresh.out_bias.any() and not fresh.hidden_bias.any()


def test_the_output_normalization_keeps_a_batch_from_collapsing():
    # However Omega's parameters move, its second logit is standardized over the batch: some weights stay >= 0.5.
    rescalers = ClassRescalers(1, seed=0)
    with torch.no_grad():
        rescalers.out_bias.copy_(torch.tensor([[50.0, -50.0]]))
    weights = rescalers(torch.randn(32, NUM_FEATURES), torch.zeros(32, dtype=torch.long))
    assert weights.max() > 0.5


# --- the look-ahead -----------------------------------------------------------------------------------------------
def test_meta_gradient_matches_the_closed_form_of_a_linear_model():
    """f(x) = W x + b with cross-entropy: grad_W l_i = (p_i - t_i) x_i^T, grad_b l_i = p_i - t_i, so for
    theta' = theta - lr * grad mean_i(w_i l_i) and meta loss L = mean_j(v_j l_j(theta')):
    dL/dw_i = -(lr / B) * mean_j v_j (p'_j - t_j) . (p_i - t_i) (x_j . x_i + 1), and dL/dv_j = l_j(theta') / M."""
    gen = torch.Generator().manual_seed(0)
    batch, meta, dim, classes, lr = 6, 4, 5, 3, 0.7
    net = nn.Linear(dim, classes)
    x, x_meta = torch.randn(batch, dim, generator=gen), torch.randn(meta, dim, generator=gen)
    t = nn.functional.one_hot(torch.randint(0, classes, (batch,), generator=gen), classes).float()
    t_meta = nn.functional.one_hot(torch.randint(0, classes, (meta,), generator=gen), classes).float()
    w = torch.rand(batch, generator=gen).requires_grad_()
    v = torch.rand(meta, generator=gen).requires_grad_()

    stepped = lookahead_parameters(net, (w * soft_cross_entropy(net(x), t)).mean(), lr)
    meta_losses = soft_cross_entropy(functional_logits(net, stepped, x_meta), t_meta)
    (v * meta_losses).mean().backward()

    with torch.no_grad():
        residual = net(x).softmax(-1) - t                                                  # (B, C)
        weight_grad = (w[:, None, None] * residual[:, :, None] * x[:, None, :]).mean(0)    # (C, D)
        bias_grad = (w[:, None] * residual).mean(0)
        stepped_logits = x_meta @ (net.weight - lr * weight_grad).T + (net.bias - lr * bias_grad)
        meta_residual = stepped_logits.softmax(-1) - t_meta                                # (M, C)
        kernel = x_meta @ x.T + 1                                                          # (M, B)
        expected_w = -(lr / batch) * (v[:, None] * (meta_residual @ residual.T) * kernel).mean(0)
        expected_v = -(t_meta * stepped_logits.log_softmax(-1)).sum(-1) / meta
    torch.testing.assert_close(w.grad, expected_w)
    torch.testing.assert_close(v.grad, expected_v)


def network_with_batch_norm(dim: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, classes))


def prepared(reg, network: nn.Module, classes: int, lr: float = 0.1) -> torch.optim.Optimizer:
    reg.set_class_counts(torch.ones(classes))
    reg.wrap_model(network)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr)
    reg.configure_optimizer(optimizer)
    return optimizer


def train_step(reg, network, optimizer, x, targets, index):
    images, targets = reg.mix_batch(x, targets, index)
    logits = network(images)
    per_sample = reg.loss(soft_cross_entropy(logits, targets), logits, targets, index, network)
    optimizer.zero_grad()
    per_sample.mean().backward()
    optimizer.step()
    return per_sample


def test_the_hook_updates_omega_from_the_second_batch_and_leaves_batch_norm_statistics_alone():
    torch.manual_seed(0)
    classes, dim = 3, 4
    network = network_with_batch_norm(dim, classes).train()
    reg = storm()
    optimizer = prepared(reg, network, classes)
    x = torch.randn(8, dim)
    targets = nn.functional.one_hot(torch.arange(8) % classes, classes).float()
    before = [p.detach().clone() for p in reg.rescalers.parameters()]
    train_step(reg, network, optimizer, x, targets, torch.arange(8))
    assert all(torch.equal(a, b) for a, b in zip(before, reg.rescalers.parameters()))  # no meta batch yet

    bn = network[1]
    running = bn.running_mean.clone()
    images, mixed = reg.mix_batch(x, targets, torch.arange(8))
    logits = network(images)
    after_forward = bn.running_mean.clone()
    assert not torch.equal(running, after_forward)
    per_sample = soft_cross_entropy(logits, mixed)
    weighted = reg.loss(per_sample, logits, mixed, torch.arange(8), network)
    # The extra passes and the look-ahead ran on copies of the buffers.
    torch.testing.assert_close(bn.running_mean, after_forward)
    assert not all(torch.equal(a, b) for a, b in zip(before, reg.rescalers.parameters()))
    # The network trains on detached weights in (0, 1).
    assert not weighted.requires_grad or weighted.grad_fn is not None
    ratio = (weighted / per_sample).detach()
    assert ((ratio > 0) & (ratio < 1)).all()
    grads = torch.autograd.grad(weighted.mean(), list(network.parameters()) + list(reg.rescalers.parameters()),
                                allow_unused=True)
    assert all(g is None for g in grads[len(list(network.parameters())):])


def test_noisy_samples_end_with_lower_weights_than_clean_ones():
    """Four Gaussian blobs, 40% of the labels redrawn from the other classes, the network trained with Adam as in the
    official code: after some epochs of STORM, nearly every corrupted sample weighs less than nearly every clean
    one, though no clean data was ever seen."""
    torch.manual_seed(0)
    classes, dim, per_class = 4, 8, 100
    centers = torch.randn(classes, dim) * 3
    clean = torch.arange(classes).repeat_interleave(per_class)
    x = centers[clean] + torch.randn(len(clean), dim)
    noisy = torch.rand(len(clean)) < 0.4
    labels = torch.where(noisy, (clean + torch.randint(1, classes, clean.shape)) % classes, clean)
    targets = nn.functional.one_hot(labels, classes).float()
    network = network_with_batch_norm(dim, classes).train()
    reg = storm()
    prepared(reg, network, classes)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    reg.configure_optimizer(optimizer)
    for _ in range(10):
        for batch in torch.randperm(len(labels)).split(32):
            train_step(reg, network, optimizer, x[batch], targets[batch], batch)
    weight = torch.empty(len(labels))
    for batch in torch.randperm(len(labels)).split(32):
        logits = network(x[batch])
        with torch.no_grad():
            weight[batch] = reg.weights(dict(network.named_parameters()), x[batch],
                                        soft_cross_entropy(logits, targets[batch]), logits, targets[batch])
    noisy_below_clean = (weight[noisy][:, None] < weight[~noisy][None, :]).float().mean()
    assert noisy_below_clean > 0.9, noisy_below_clean
    assert weight[noisy].mean() < 0.5 * weight[~noisy].mean()


# --- state, values and stacks -------------------------------------------------------------------------------------
def test_omega_and_its_adam_moments_survive_a_state_dict_round_trip():
    torch.manual_seed(0)
    network = network_with_batch_norm(4, 3).train()
    reg = storm()
    optimizer = prepared(reg, network, 3)
    targets = nn.functional.one_hot(torch.arange(8) % 3, 3).float()
    for _ in range(2):
        train_step(reg, network, optimizer, torch.randn(8, 4), targets, torch.arange(8))
    fresh = storm()
    fresh.load_state_dict(reg.state_dict())  # before set_class_counts: Omega takes the checkpoint's size
    for a, b in zip(fresh.rescalers.parameters(), reg.rescalers.parameters()):
        torch.testing.assert_close(a, b)
    moments = fresh.ensure_meta_optimizer().state_dict()["state"]
    torch.testing.assert_close(moments[0]["exp_avg"], reg.meta_optimizer.state_dict()["state"][0]["exp_avg"])
    torch.testing.assert_close(fresh.last_weights, reg.last_weights)


def test_the_report_splits_the_latest_weights_by_label_corruption():
    reg = storm()
    reg.remember(torch.tensor([0, 2, 3]), torch.tensor([0.2, 0.8, 0.6]))
    reg.remember(torch.tensor([2]), torch.tensor([0.4]))  # the latest weight counts; sample 1 was never seen
    noisy = torch.tensor([True, False, False, True, False])
    report = reg.train_report(None, [], lambda: [], noisy)["storm_weights"]
    assert report == pytest.approx({"mean_clean": 0.4, "below_half_clean": 1.0,
                                    "mean_noisy": 0.4, "below_half_noisy": 0.5})
    report = reg.train_report(None, [], lambda: [], None)["storm_weights"]
    assert report == pytest.approx({"mean_all": 0.4, "below_half_all": 2 / 3})


@pytest.mark.parametrize("params, message", [
    ({"meta_lr": 0}, "regularizer.storm.meta_lr=0 is invalid: must be a number > 0"),
    ({"dropout_rounds": -1}, "regularizer.storm.dropout_rounds=-1 is invalid: must be an integer >= 0"),
    ({"dropout_rounds": 1.5}, "regularizer.storm.dropout_rounds=1.5 is invalid"),
])
def test_bad_values_fail_with_one_line(params, message):
    with pytest.raises(UserError, match=message) as err:
        storm(**params)
    assert "\n" not in str(err.value)


def run_config(compile_model: bool = False) -> dict:
    return {"data": {"name": "digits"}, "trainer": {"compile": compile_model}}


@pytest.mark.parametrize("stack, message", [
    ({"storm": {}, "mixup": {"alpha": 1.0, "prob": 1.0}}, "regularizer=storm cannot be stacked with mixup"),
    ({"storm": {}, "label_smoothing": {"eps": 0.1}}, "regularizer=storm cannot be stacked with label_smoothing"),
    ({"storm": {}, "multisample_dropout": {"rate": 0.5, "num_samples": 2}},
     "regularizer=storm cannot be stacked with multisample_dropout"),
    ({"storm": {}, "weight_compander": {}}, "regularizer=storm cannot be stacked with weight_compander"),
    ({"storm": {}, "elr": {"lam": 3.0, "beta": 0.7}}, "storm and elr both do noisy-label loss"),
    ({"storm": {}, "coteaching": {"forget_rate": 0.2, "num_gradual": 10, "schedule": "paper"}},
     "storm and coteaching both do noisy-label loss"),
])
def test_stacks_that_cannot_work_are_refused(stack, message):
    cfg = {name: ({"meta_lr": 1e-2, "dropout_rounds": 2} if name == "storm" else params)
           for name, params in stack.items()}
    with pytest.raises(UserError, match=message):
        build_regularizers(cfg, seed=0, run=run_config())


def test_compiled_networks_are_refused_and_dropout_stacks():
    cfg = {"storm": {"meta_lr": 1e-2, "dropout_rounds": 2}}
    with pytest.raises(UserError, match="regularizer=storm cannot run with trainer.compile=true"):
        build_regularizers(cfg, seed=0, run=run_config(compile_model=True))
    built = build_regularizers({**cfg, "dropout": {"rate": 0.3}}, seed=0, run=run_config())
    assert [reg.name for reg in built] == ["storm", "dropout"]
