"""Each norm's defining property, against torch/timm layers or the paper's formula written out by hand."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import EvoNorm2dB0, EvoNorm2dS0, FilterResponseNormTlu2d

from regbench.norms import WSConv2d, get_conv, get_norm, norm_layer_from_config
from regbench.norms.conv import Conv2d

torch.manual_seed(0)


def feature_map(*shape):
    return torch.randn(*shape) * 3 + 1.5


def randomize_affine(*modules):
    """The same random affine (and v / tau) on every module, so comparisons do not pass only at init."""
    generator = torch.Generator().manual_seed(1)
    values = {}
    for module in modules:
        for name, param in module.named_parameters():
            if name not in values:
                values[name] = torch.rand(param.shape, generator=generator) + 0.5
            param.data.copy_(values[name])


def test_batchnorm_normalizes_each_channel_in_train_and_uses_running_stats_in_eval():
    norm, x = get_norm("batchnorm", 3), feature_map(4, 3, 5, 5)
    y = norm(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    norm.eval()
    expected = (x - norm.running_mean.view(1, -1, 1, 1)) / (norm.running_var.view(1, -1, 1, 1) + 1e-5).sqrt()
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_ghost_batchnorm_normalizes_each_virtual_batch_on_its_own():
    norm, x = get_norm("ghost_batchnorm", 3, virtual_batch_size=2), feature_map(6, 3, 4, 4)
    y = norm(x)
    for chunk in y.split(2):
        assert torch.allclose(chunk.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
        assert torch.allclose(chunk.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    assert not torch.allclose(y, F.batch_norm(x, None, None, training=True), atol=1e-2)  # not whole-batch BN


def test_layernorm_normalizes_each_sample_and_groupnorm_each_group():
    x = feature_map(3, 4, 5, 5)
    y = get_norm("layernorm", 4)(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var(dim=(1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    groups = get_norm("groupnorm", 4, groups=2)(x).reshape(3, 2, -1)
    assert torch.allclose(groups.mean(dim=-1), torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(groups.var(dim=-1, unbiased=False), torch.ones(3, 2), atol=1e-3)


def test_layernorm_tokens_match_torch_layernorm():
    x = feature_map(2, 5, 8)
    assert torch.allclose(norm_layer_from_config({"name": "layernorm"}).tokens(8)(x), F.layer_norm(x, (8,)), atol=1e-5)


def test_instancenorm_normalizes_each_sample_and_channel_over_space():
    x = feature_map(2, 3, 4, 4)
    expected = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    assert torch.allclose(get_norm("instancenorm", 3)(x), expected, atol=1e-5)


def test_rmsnorm_matches_torch_rmsnorm_over_channels_and_over_tokens():
    reference = nn.RMSNorm(6, eps=1e-6)
    ours = get_norm("rmsnorm", 6)
    randomize_affine(reference, ours)
    x = feature_map(2, 6, 3, 3)
    assert torch.allclose(ours(x), reference(x.movedim(1, -1)).movedim(-1, 1), atol=1e-5)
    tokens = norm_layer_from_config({"name": "rmsnorm"}).tokens(6)
    randomize_affine(reference, tokens)
    t = feature_map(2, 5, 6)
    assert torch.allclose(tokens(t), reference(t), atol=1e-5)


def test_evonorm_b0_matches_timm_in_train_and_eval():
    ours, ref = get_norm("evonorm_b0", 4), EvoNorm2dB0(4, eps=1e-3, momentum=0.1)
    randomize_affine(ours, ref)
    x = feature_map(3, 4, 5, 5)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-5)
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_evonorm_s0_matches_timm():
    ours, ref = get_norm("evonorm_s0", 8, groups=4), EvoNorm2dS0(8, groups=4, eps=1e-5)
    randomize_affine(ours, ref)
    x = feature_map(2, 8, 3, 3)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_frn_matches_timm_filter_response_norm_with_tlu():
    ours, ref = get_norm("frn", 4), FilterResponseNormTlu2d(4, eps=1e-6)
    randomize_affine(ours, ref)
    x = feature_map(2, 4, 3, 3)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_norms_that_include_the_activation_drop_it_when_asked():
    x = feature_map(2, 4, 3, 3)
    frn = norm_layer_from_config({"name": "frn"})(4, act=False)
    assert frn.tau is None and (frn(x) < 0).any()


def test_weight_standardized_conv_weights_have_zero_mean_unit_std_per_output_channel():
    conv = get_conv("ws")(3, 5, 3)
    nn.init.normal_(conv.weight, mean=2.0, std=4.0)
    w = conv.standardized_weight().flatten(1)
    assert torch.allclose(w.mean(dim=1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(w.std(dim=1, unbiased=False), torch.ones(5), atol=1e-4)
    x = feature_map(1, 3, 6, 6)
    assert torch.allclose(conv(x), F.conv2d(x, conv.standardized_weight(), conv.bias), atol=1e-5)
    assert get_conv("plain") is Conv2d and issubclass(Conv2d, nn.Conv2d) and isinstance(conv, WSConv2d)


@pytest.mark.parametrize("name", ["ws_batchnorm", "ws_groupnorm", "bcn_ws"])
def test_weight_standardized_norms_switch_the_conv(name):
    assert norm_layer_from_config({"name": name, **({"groups": 2} if "group" in name or "bcn" in name else {})}
                                  ).conv_layer is WSConv2d


def test_bcn_equals_estimated_batchnorm_then_groupnorm():
    bcn = get_norm("bcn_ws", 4, groups=2, momentum=0.5)
    randomize_affine(bcn)
    stage1_weight, stage1_bias = bcn.batch_stage.weight.detach().clone(), bcn.batch_stage.bias.detach().clone()
    stage1_bias -= 0.7 + torch.arange(4.0)  # a shift the group stage only undoes if stage 1 is skipped
    bcn.batch_stage.bias.data.copy_(stage1_bias)
    x = feature_map(2, 4, 3, 3)
    y = bcn(x)
    # Stage 1: the running estimates, moved half-way (momentum 0.5) from (0, 1) to this batch's statistics
    # (its variance around the old running mean, 0), then the batch stage's own per-channel affine (the
    # paper's gamma_b, beta_b; the authors' EstBN).
    mean = 0.5 * x.mean(dim=(0, 2, 3))
    var = 0.5 + 0.5 * x.square().mean(dim=(0, 2, 3))
    stage1 = (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + 1e-5).sqrt()
    stage1 = stage1 * stage1_weight.view(1, -1, 1, 1) + stage1_bias.view(1, -1, 1, 1)
    # Stage 2: GroupNorm with 2 groups, then the affine.
    grouped = stage1.reshape(2, 2, -1)
    stage2 = (grouped - grouped.mean(-1, keepdim=True)) / (grouped.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    expected = stage2.reshape(x.shape) * bcn.weight.view(1, -1, 1, 1) + bcn.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, expected, atol=1e-5)
    assert torch.allclose(bcn.batch_stage.running_mean, mean) and torch.allclose(bcn.batch_stage.running_var, var)


def test_estimated_batchnorm_one_step_measures_the_variance_around_the_old_running_mean():
    """One channel holding 1, 3, 5, 7 (batch 2, 1x2 maps), estimates (mean 1, var 1), rate 0.5, worked by hand:
    batch mean 4 -> running mean 1 + 0.5 * (4 - 1) = 2.5; spread around the OLD estimate 1 is
    (0 + 4 + 16 + 36) / 4 = 14 -> running var 1 + 0.5 * (14 - 1) = 7.5 (the batch's own variance, 5,
    would give 3); the output uses the updated estimates."""
    stage = get_norm("bcn_ws", 1, groups=1, momentum=0.5).batch_stage
    stage.running_mean.fill_(1.0)
    x = torch.tensor([1.0, 3.0, 5.0, 7.0]).view(2, 1, 1, 2)
    y = stage(x)
    assert stage.running_mean.item() == pytest.approx(2.5) and stage.running_var.item() == pytest.approx(7.5)
    expected = (torch.tensor([1.0, 3.0, 5.0, 7.0]) - 2.5) / (7.5 + 1e-5) ** 0.5
    assert torch.allclose(y.flatten(), expected, atol=1e-6)


def test_estimated_batchnorm_settles_at_the_true_variance_at_batch_two():
    """Batch 2 of 1x2 maps (n = 4 values per channel), true variance 2, rate r = 0.1. The running mean m
    jitters with variance r / (2 - r) * 2 / 4 around the true mean, so the spread around the old m settles
    at 2 * (1 + r / ((2 - r) * 4)) = 2.026 (the authors' EstBN); the batch's own variance would settle at
    2 * 3/4 = 1.5. Averaged over 512 channels after 300 steps (about 14 time constants of 1/r)."""
    generator = torch.Generator().manual_seed(0)
    stage = get_norm("bcn_ws", 512, groups=1, momentum=0.1).batch_stage
    for _ in range(300):
        stage(torch.randn(2, 512, 1, 2, generator=generator) * 2 ** 0.5 + 1.0)
    expected = 2 * (1 + 0.1 / ((2 - 0.1) * 4))
    assert stage.running_var.mean().item() == pytest.approx(expected, abs=0.05)


def test_powernorm_forward_uses_previous_running_quadratic_mean_and_approximate_backward():
    pn = get_norm("powernorm", 3, alpha_fwd=0.8, alpha_bkw=0.7, warmup_iters=0)
    randomize_affine(pn)
    pn.nu.fill_(0.2)
    phi_prev, nu_prev = pn.running_phi.clone(), pn.nu.clone()
    x = feature_map(2, 3, 2, 2).requires_grad_()
    y = pn(x)
    rows = x.detach().movedim(1, -1).reshape(-1, 3)
    x_hat = rows / (phi_prev + 1e-5).sqrt()  # no mean subtraction, previous running statistic
    assert torch.allclose(y.movedim(1, -1).reshape(-1, 3), x_hat * pn.weight + pn.bias, atol=1e-5)
    assert torch.allclose(pn.running_phi, 0.8 * phi_prev + 0.2 * rows.pow(2).mean(0), atol=1e-5)
    grad_y = torch.randn_like(y)
    y.backward(grad_y)
    g = grad_y.movedim(1, -1).reshape(-1, 3) * pn.weight.detach()
    expected_grad = (g - nu_prev * x_hat) / (phi_prev + 1e-5).sqrt()
    assert torch.allclose(x.grad.movedim(1, -1).reshape(-1, 3), expected_grad, atol=1e-5)
    gamma, lam = x_hat.pow(2).mean(0), (x_hat * g).mean(0)
    assert torch.allclose(pn.nu, nu_prev * (1 - 0.3 * gamma) + 0.3 * lam, atol=1e-5)


def test_powernorm_warmup_uses_the_batch_quadratic_mean_and_eval_the_running_one():
    pn = get_norm("powernorm", 3, warmup_iters=1)
    x = feature_map(4, 3, 2, 2)
    phi = x.pow(2).mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    assert torch.allclose(pn(x), x / (phi + 1e-5).sqrt(), atol=1e-5)
    pn.eval()
    assert torch.allclose(pn(x), x / (pn.running_phi.view(1, -1, 1, 1) + 1e-5).sqrt(), atol=1e-5)


def test_ghost_batchnorm_running_statistics_follow_batchnorm_per_virtual_batch_also_as_a_cumulative_average():
    # momentum=None is how SWA's BN recomputation (torch.optim.swa_utils.update_bn) asks for a plain average.
    for momentum in (0.1, None):
        ghost, reference = get_norm("ghost_batchnorm", 3, virtual_batch_size=2), nn.BatchNorm2d(3)
        ghost.momentum = reference.momentum = momentum
        x = feature_map(6, 3, 4, 4)
        ghost(x)
        for chunk in x.split(2):
            reference(chunk)
        assert torch.allclose(ghost.running_mean, reference.running_mean, atol=1e-6)
        assert torch.allclose(ghost.running_var, reference.running_var, atol=1e-6)
        assert int(ghost.num_batches_tracked) == int(reference.num_batches_tracked) == 3


def test_a_norm_module_whose_token_builder_contradicts_its_traits_is_refused_at_registration():
    from regbench.norms.registry import NORM_HOOKS, register_norm

    hooks = NORM_HOOKS["batchnorm"]
    with pytest.raises(ValueError, match="norm 'batchnorm': its traits say tokens=False but its module registers a"):
        register_norm("batchnorm", tokens=lambda dim: None)(lambda num_channels: None)
    with pytest.raises(ValueError, match="norm 'layernorm': its traits say tokens=True but its module registers no"):
        register_norm("layernorm")(lambda num_channels: None)
    assert NORM_HOOKS["batchnorm"] is hooks
