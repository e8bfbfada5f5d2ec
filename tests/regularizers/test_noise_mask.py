"""Policy Gradient-Driven Noise Mask: the REINFORCE gradient on hand cases, the policy's Beta parameters and their
running prior, the masks' statistics, the phase switch (and its survival in a state dict), and the refusals."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn as nn

from regbench.errors import ParamError, UserError
from regbench.regularizers import build_regularizers, create_regularizer
from regbench.regularizers.base import TrainProgress
from regbench.regularizers.noise_mask_policy import MaskPolicy, blur_kernel_size, mask_image, reinforce_loss
from regbench.runshape import RunShape
from regbench.specs.run_checks import regularizer_run_check

PARAMS = dict(pretrain_epochs=1, grid=4, blur_sigma=0.0, policy_width=4, policy_lr=1e-3, baseline="none",
              prior_weight=0.9, prior_momentum=0.99)


def noise_mask(**changes):
    return create_regularizer("noise_mask", seed=0, **{**PARAMS, **changes})


def noise_mask_run_check(**changes):
    """The torch-free check of noise_mask with these changes against a run's shape."""
    return lambda shape: regularizer_run_check("noise_mask", {**PARAMS, **changes}, shape)


def constant_heads(policy: MaskPolicy, log_alpha: float, log_beta: float) -> None:
    """Heads that output `log_alpha` / `log_beta` for every image and cell (last layer: zero weights, that bias)."""
    for head, value in ((policy.alpha_head, log_alpha), (policy.beta_head, log_beta)):
        nn.init.zeros_(head[-1].weight)
        nn.init.constant_(head[-1].bias, value)


def finish_epoch(reg, epoch: int) -> None:
    reg.on_train_batch_end(nn.Identity(), TrainProgress(epoch=epoch, max_epochs=3, epoch_finished=True, step=1,
                                                        total_steps=3, train_batches=[]))


@pytest.mark.parametrize("baseline,expected", [("none", [1.5, 0.5]), ("batch_mean", [0.5, -0.5])])
def test_the_reinforce_loss_is_log_prob_times_the_advantage(baseline, expected):
    """Costs (3, 1) over a batch of 2: the gradient on each log-probability is (cost - b) / 2, b = 0 or the mean 2."""
    log_prob = torch.tensor([-1.0, 2.0], requires_grad=True)
    reinforce_loss(log_prob, torch.tensor([3.0, 1.0]), baseline).backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor(expected))


def test_the_policy_gradient_through_a_beta_cell_matches_the_hand_derivative():
    """Beta(e^a, e^b) at a = b = 0 is uniform; d log p(m) / d alpha = log m - psi(1) + psi(2) = log m + 1, and
    d alpha / d a = e^a = 1. One sample m = 0.5 with cost 2: d loss / d a = 2 * (log 0.5 + 1)."""
    log_alpha, log_beta = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    dist = torch.distributions.Beta(log_alpha.exp(), log_beta.exp())
    reinforce_loss(dist.log_prob(torch.tensor([0.5])), torch.tensor([2.0]), "none").backward()
    torch.testing.assert_close(log_alpha.grad, torch.tensor([2 * (math.log(0.5) + 1)]))
    torch.testing.assert_close(log_beta.grad, torch.tensor([2 * (math.log(0.5) + 1)]))


def test_the_shape_parameters_mix_the_running_prior_with_the_heads_and_the_prior_follows_them():
    policy = MaskPolicy(grid=2, width=4, prior_weight=0.9, prior_momentum=0.99, seed=0)
    constant_heads(policy, log_alpha=1.0, log_beta=-1.0)
    policy.log_alpha_prior.fill_(0.5)
    policy.log_beta_prior.fill_(0.2)
    dist = policy(torch.randn(3, 2, 8, 8))
    torch.testing.assert_close(dist.concentration1, torch.full((3, 4), math.exp(0.9 * 0.5 + 0.1 * 1.0)))
    torch.testing.assert_close(dist.concentration0, torch.full((3, 4), math.exp(0.9 * 0.2 + 0.1 * -1.0)))
    torch.testing.assert_close(policy.log_alpha_prior, torch.full((4,), 0.99 * 0.5 + 0.01 * 1.0))
    torch.testing.assert_close(policy.log_beta_prior, torch.full((4,), 0.99 * 0.2 + 0.01 * -1.0))
    policy.eval()
    policy(torch.randn(3, 2, 8, 8))  # evaluation leaves the prior alone
    torch.testing.assert_close(policy.log_alpha_prior, torch.full((4,), 0.99 * 0.5 + 0.01 * 1.0))


def test_mask_pixels_follow_the_policys_beta_distribution():
    """One cell per pixel and no blur: the pixels of 2000 masks have the Beta(alpha, beta) mean and variance."""
    torch.manual_seed(0)
    reg = noise_mask(grid=8)
    constant_heads(reg.policy, 0.0, 0.0)
    reg.policy.log_alpha_prior.fill_(math.log(2.0) / 0.9)  # alpha = 2
    reg.policy.log_beta_prior.fill_(math.log(5.0) / 0.9)  # beta = 5
    reg.policy.prior_momentum = 1.0  # hold the prior still while sampling
    mask, log_prob = reg.sample_mask(torch.randn(2000, 1, 8, 8))
    a, b = 2.0, 5.0
    assert mask.shape == (2000, 1, 8, 8) and log_prob.shape == (2000,)
    assert abs(mask.mean().item() - a / (a + b)) < 0.005
    assert abs(mask.var().item() - a * b / ((a + b) ** 2 * (a + b + 1))) < 0.002
    cells = mask.flatten(1)
    expected = torch.distributions.Beta(torch.tensor(a), torch.tensor(b)).log_prob(cells).sum(dim=1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-4)


def test_cells_cover_their_blocks_and_the_blur_keeps_a_uniform_mask_uniform():
    cells = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    mask = mask_image(cells, 4, 4, sigma=0.0)
    torch.testing.assert_close(mask[0, 0], torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2],
                                                         [0.3, 0.3, 0.4, 0.4], [0.3, 0.3, 0.4, 0.4]]))
    assert [blur_kernel_size(s) for s in (0.0, 0.4, 1.0, 6.0)] == [1, 1, 3, 13]  # the official 13 for sigma 6
    torch.testing.assert_close(mask_image(torch.full((1, 4), 0.7), 8, 8, sigma=1.0), torch.full((1, 1, 8, 8), 0.7))
    blurred = mask_image(cells, 8, 8, sigma=1.0)[0, 0]
    assert blurred[3, 3] > 0.1 and blurred[4, 4] < 0.4  # block edges softened


def test_the_policy_learns_masks_with_a_lower_cost():
    """With the cost 1 - the mask's mean, the policy's own optimizer raises the masks' mean."""
    torch.manual_seed(0)
    reg = noise_mask(policy_lr=0.05, baseline="batch_mean")
    images = torch.randn(32, 1, 8, 8)
    start = reg.policy(images).mean.mean().item()
    for _ in range(60):
        mask, log_prob = reg.sample_mask(images)
        loss = reinforce_loss(log_prob, 1 - mask.mean(dim=(1, 2, 3)), reg.baseline)
        reg.policy_optimizer.zero_grad()
        loss.backward()
        reg.policy_optimizer.step()
    assert reg.policy(images).mean.mean().item() > start + 0.1


def test_the_loss_hook_steps_only_the_policy_and_leaves_the_classifiers_loss():
    torch.manual_seed(0)
    reg = noise_mask()
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    images, targets = torch.randn(8, 1, 8, 8), torch.eye(10)[torch.arange(8)]
    masked, same_targets = reg.mix_batch(images, targets, torch.arange(8))
    assert same_targets is targets and not torch.equal(masked, images)
    logits = classifier(masked)
    per_sample = -(targets * logits.log_softmax(-1)).sum(-1)
    before = [p.detach().clone() for p in reg.policy.parameters()]
    assert reg.loss(per_sample, logits, targets, torch.arange(8), classifier) is per_sample
    assert any(not torch.equal(a, b) for a, b in zip(before, reg.policy.parameters()))
    assert all(p.grad is None for p in classifier.parameters())  # the policy's backward never reaches it
    assert reg.policy_optimizer.state  # Adam moments of the policy only


def test_a_fraction_of_the_epochs_is_resolved_by_the_run_check():
    reg = noise_mask(pretrain_epochs=0.5)
    with pytest.raises(RuntimeError, match="fit_run"):
        reg.pretraining
    reg.fit_run(shape(max_epochs=10))
    assert reg.pretrain_count == 5
    for epoch in range(4):
        finish_epoch(reg, epoch)
    assert reg.pretraining
    finish_epoch(reg, 4)
    assert not reg.pretraining


def test_after_pretraining_no_mask_is_applied_and_a_reloaded_state_stays_in_fine_tuning():
    reg = noise_mask(pretrain_epochs=1)
    images, targets = torch.randn(4, 1, 8, 8), torch.eye(10)[:4]
    assert reg.pretraining
    finish_epoch(reg, 0)
    assert not reg.pretraining
    clean, _ = reg.mix_batch(images, targets, torch.arange(4))
    assert clean is images
    per_sample = torch.ones(4)
    assert reg.loss(per_sample, torch.randn(4, 10), targets, torch.arange(4), None) is per_sample
    assert reg.eval_model(nn.Identity()).__class__ is nn.Identity  # evaluation always sees the plain network
    resumed = noise_mask(pretrain_epochs=1)
    resumed.load_state_dict(reg.state_dict())
    assert not resumed.pretraining and resumed.mix_batch(images, targets, torch.arange(4))[0] is images


def policy_step(reg):
    targets = torch.eye(10)[:4]
    reg.mix_batch(torch.randn(4, 1, 8, 8), targets, torch.arange(4))
    reg.loss(torch.ones(4), torch.randn(4, 10), targets, torch.arange(4), None)


def test_the_policy_optimizer_state_survives_a_state_dict_round_trip_loaded_at_the_next_policy_step():
    """Lightning loads a resumed run's state dict, then moves the module to the GPU: the saved moments are loaded into
    the optimizer at its next step (Adam casts them to the parameters' device then), and saved again until then."""
    torch.manual_seed(0)
    reg = noise_mask(pretrain_epochs=2)
    policy_step(reg)
    saved = reg.policy_optimizer.state_dict()
    resumed = noise_mask(pretrain_epochs=2)
    resumed.load_state_dict(reg.state_dict())
    assert resumed.pretraining and not resumed.policy_optimizer.state
    assert resumed.state_dict()["_extra_state"]["policy_optimizer"]["state"]  # saved again before any step
    resumed.policy_optimizer.step = lambda: None  # keep the loaded moments as they were saved
    policy_step(resumed)
    loaded = resumed.policy_optimizer.state_dict()
    assert loaded["state"].keys() == saved["state"].keys()
    for key, state in saved["state"].items():
        torch.testing.assert_close(loaded["state"][key]["exp_avg"], state["exp_avg"])


@pytest.mark.parametrize("key,value,message", [
    ("pretrain_epochs", -1, "must be an integer >= 0 (epochs on masked images) or a float in (0, 1)"),
    ("pretrain_epochs", 1.0, "must be an integer >= 0 (epochs on masked images) or a float in (0, 1)"),
    ("grid", 0, "must be an integer > 0"),
    ("blur_sigma", 0.5, "must be a fraction of the image side in [0, 0.5)"),
    ("policy_width", 2.5, "must be an integer > 0"),
    ("policy_lr", 0, "must be a number > 0"),
    ("baseline", "critic", "allowed: none, batch_mean"),
    ("prior_weight", 1.0, "must be a fraction in [0, 1)"),
    ("prior_momentum", -0.1, "must be a fraction in [0, 1)"),
])
def test_bad_values_are_refused_naming_the_parameter(key, value, message):
    with pytest.raises(UserError, match=re.escape(f"regularizer.noise_mask.{key}={value!r} is invalid: {message}")):
        noise_mask(**{key: value})


def shape(side=8, batch_size=32, max_epochs=3):
    return RunShape(image_shape=(1, side, side), train_images=1000, batch_size=batch_size, world_size=1,
                    max_epochs=max_epochs)


def test_the_run_checks_refuse_settings_the_images_or_the_epochs_cannot_take():
    with pytest.raises(ParamError, match="grid=9 is invalid: must be at most the image side 8"):
        noise_mask_run_check(grid=9)(shape())
    with pytest.raises(ParamError, match="pretrain_epochs=3 is invalid: must leave epochs of trainer.max_epochs=3 "):
        noise_mask_run_check(pretrain_epochs=3)(shape())
    with pytest.raises(ParamError, match=re.escape("pretrain_epochs=0.9 is invalid: must leave epochs of "
                                                   "trainer.max_epochs=3 (3 of 3 epochs)")):
        noise_mask_run_check(pretrain_epochs=0.9)(shape())
    with pytest.raises(UserError, match="needs data.batch_size >= 2"):
        noise_mask_run_check()(shape(batch_size=1))
    inactive, = noise_mask_run_check(pretrain_epochs=0)(shape())
    assert inactive.at("regularizer.noise_mask") == "regularizer.noise_mask.pretrain_epochs=0 never masks a batch"
    inactive, = noise_mask_run_check(pretrain_epochs=0.1)(shape())
    assert inactive.why == "never masks a batch (0 of 3 epochs)"
    assert noise_mask_run_check(grid=8, blur_sigma=0.49)(shape()) == []
    noise_mask(grid=2, blur_sigma=0.49).sample_mask(torch.randn(2, 1, 3, 3))  # the widest blur fits tiny images


def run_config(devices=1):
    return {"trainer": {"devices": devices, "accelerator": "cpu"}, "data": {"name": "digits"}}


@pytest.mark.parametrize("other,params,message", [
    ("mixup", {"alpha": 1.0, "prob": 1.0}, "cannot be stacked with mixup: mixing blends one image's noise mask"),
    ("coteaching", {"forget_rate": 0.2, "num_gradual": 1, "schedule": "paper"},
     "cannot be stacked with coteaching: its two networks"),
])
def test_stacks_where_the_reward_is_not_the_masks_own_are_refused(other, params, message):
    with pytest.raises(UserError, match=f"regularizer=noise_mask {message}"):
        build_regularizers({"noise_mask": PARAMS, other: params}, seed=0, run=run_config())


def test_several_devices_are_refused():
    with pytest.raises(UserError, match="trains its policy on one device; trainer.devices=2"):
        build_regularizers({"noise_mask": PARAMS}, seed=0, run=run_config(devices=2))
    reg, = build_regularizers({"noise_mask": PARAMS, "cutout": {"length": 0.5, "n_holes": 1}}, seed=0,
                              run=run_config())[:1]
    assert reg.name == "noise_mask"
