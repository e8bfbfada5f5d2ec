"""Unified Normalization against the paper's equations written out by hand: geometric-mean smoothing of the
forward statistic, the EMA of windowed gradient statistics in the backward, the AM-GM outlier filtration and
the running statistic used at inference."""
import pytest
import torch

from regbench.errors import UserError
from regbench.norms import get_norm, norm_layer_from_config

EPS = 1e-5


def tokens(scale=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 4, generator=generator) * torch.tensor([1.0, 2.0, 0.5, 1.5]) * scale).double()


def unified(**options):
    settings = {"window": 2, "momentum": 0.5, "warmup_iters": 0, "outlier_filtration": False, **options}
    return norm_layer_from_config({"name": "unified_norm", **settings}).tokens(4).double()


def quadratic_mean(x):
    return x.reshape(-1, x.shape[-1]).pow(2).mean(0)


def test_forward_divides_by_the_geometric_mean_of_the_window_and_backward_by_the_smoothed_gradient_statistic():
    norm = unified()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 0.5, 2.0, 1.5]))
    inputs = [tokens(seed=s).requires_grad_() for s in range(3)]
    grads = [tokens(seed=10 + s) for s in range(3)]
    psi, gz, running = torch.zeros(4).double(), [], torch.ones(4).double()
    for step, (x, grad_y) in enumerate(zip(inputs, grads), start=1):
        y = norm(x)
        q = [quadratic_mean(i.detach()) for i in inputs]
        # Steps 1 and 2 fill the window (M = 2) with the batch's own statistic; step 3 smooths.
        var = q[step - 1] if step <= 2 else (q[1] * q[2]).sqrt()
        z = x.detach() / (var + EPS).sqrt()
        assert torch.allclose(y, z * norm.weight + norm.bias)
        running = 0.5 * running + 0.5 * var
        assert torch.allclose(norm.running_var, running)
        y.backward(grad_y)
        g = grad_y * norm.weight.detach()
        gz.append((g * z).reshape(-1, 4).mean(0))
        psi = 0.5 * psi + 0.5 * (gz[-1] if step <= 2 else (gz[1] + gz[2]) / 2)
        assert torch.allclose(norm.psi, psi)
        assert torch.allclose(x.grad, (g - psi * z) / (var + EPS).sqrt())


def test_an_outlier_batch_is_normalized_by_its_own_statistics_and_replaced_in_the_window_by_the_running_one():
    norm = unified(outlier_filtration=True)
    steady = tokens()
    for _ in range(4):
        norm(steady.clone().requires_grad_()).sum().backward()  # AM = GM on a constant window: no outlier
    assert norm.outliers.item() == 0
    running = norm.running_var.clone()
    spike = (steady * 100).requires_grad_()
    y = norm(spike)
    assert norm.outliers.item() == 1
    batch_var = quadratic_mean(spike.detach())
    assert torch.allclose(y, spike.detach() / (batch_var + EPS).sqrt())
    assert torch.allclose(norm.window_var[5 % 2], running)  # step 5's slot holds the running statistic
    grad_y = tokens(seed=3)
    psi_before = norm.psi.clone()
    y.backward(grad_y)
    z = spike.detach() / (batch_var + EPS).sqrt()
    batch_gz = (grad_y * z).reshape(-1, 4).mean(0)
    assert torch.allclose(spike.grad, (grad_y - batch_gz * z) / (batch_var + EPS).sqrt())  # the exact gradient
    assert torch.allclose(norm.window_gz[5 % 2], psi_before)


def test_without_filtration_the_spike_enters_the_geometric_mean():
    norm = unified()
    steady = tokens()
    for _ in range(4):
        norm(steady)
    spike = steady * 100
    expected = (quadratic_mean(steady) * quadratic_mean(spike)).sqrt()
    assert torch.allclose(norm(spike), spike / (expected + EPS).sqrt())


def test_warmup_normalizes_by_the_batch_statistic_and_eval_by_the_running_one():
    norm = unified(warmup_iters=5, window=2)
    for seed in range(5):
        x = tokens(seed=seed)
        assert torch.allclose(norm(x), x / (quadratic_mean(x) + EPS).sqrt())
    norm.eval()
    x = tokens(seed=9)
    running = norm.running_var.clone()
    assert torch.allclose(norm(x), x / (running + EPS).sqrt())
    assert torch.equal(norm.running_var, running) and norm.iteration.item() == 5
    scale, shift = norm.inference_affine()
    assert torch.allclose(norm(x), x * scale + shift)


def test_cnn_features_take_statistics_over_batch_and_space():
    norm = get_norm("unified_norm", 3, warmup_iters=0)
    x = torch.randn(2, 3, 4, 4) * 3
    assert torch.allclose(norm(x), x / (x.pow(2).mean(dim=(0, 2, 3)).view(1, 3, 1, 1) + EPS).sqrt(), atol=1e-5)


@pytest.mark.parametrize("key,value,allowed", [
    ("window", 1, "must be an integer >= 2"), ("window", 2.5, "must be an integer >= 2"),
    ("momentum", 1.0, r"must be in \[0, 1\)"), ("eps", 0, "must be a number > 0"),
    ("warmup_iters", -1, "must be an integer >= 0"), ("outlier_filtration", "yes", "must be true or false"),
])
def test_bad_options_are_one_line(key, value, allowed):
    with pytest.raises(UserError, match=rf"^norm.{key}={value!r} is invalid: {allowed}") as err:
        norm_layer_from_config({"name": "unified_norm", key: value}).tokens(4)
    assert "\n" not in str(err.value)
