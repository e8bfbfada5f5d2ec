"""The grokking study's Fourier IPR on hand-made weights (Doshi et al., ICLR 2024, Eqs. 3-4 with the authors'
one-sided transform), the pruning that removes exactly the chosen neurons, the report, and the refusals."""
from __future__ import annotations

import math

import pytest
import torch

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.regularizers.fourier_ipr import fourier_ipr, per_neuron_ipr
from regbench.regularizers import create_regularizer
from regbench.regularizers.ipr_pruning import network_ipr, pruned_copy, split_accuracies

P = 11
HALF = P // 2 + 1  # one-sided spectrum: frequencies 0..floor(p/2)


def cosine(k: int, phase: float = 0.0, amplitude: float = 1.0, p: int = P) -> torch.Tensor:
    return amplitude * torch.cos(2 * math.pi * k * torch.arange(p, dtype=torch.float64) / p + phase)


@pytest.mark.parametrize("k", range(1, P // 2 + 1))
def test_a_pure_cosine_of_any_frequency_and_phase_has_ipr_one(k):
    for phase in (0.0, 0.7, -2.0):
        assert fourier_ipr(cosine(k, phase, amplitude=3.0)).item() == pytest.approx(1.0, abs=1e-12)


def test_a_constant_is_one_frequency_too():
    assert fourier_ipr(torch.full((P,), -0.4)).item() == pytest.approx(1.0, abs=1e-12)


def test_a_one_hot_vector_spreads_uniformly_and_has_the_minimum():
    delta = torch.zeros(P)
    delta[3] = 2.0
    minimum = 1 / HALF
    assert fourier_ipr(delta).item() == pytest.approx(minimum, abs=1e-12)
    random = fourier_ipr(torch.randn(2000, P, generator=torch.Generator().manual_seed(0)))
    assert random.min().item() >= minimum - 1e-12 and random.max().item() <= 1 + 1e-12


def test_two_cosines_share_the_ratio_by_their_powers():
    # |c_k| is proportional to the amplitude: IPR = (a^4 + b^4) / (a^2 + b^2)^2.
    a, b = 1.0, 2.0
    mixed = cosine(2, amplitude=a) + cosine(4, 0.3, amplitude=b)
    assert fourier_ipr(mixed).item() == pytest.approx((a ** 4 + b ** 4) / (a ** 2 + b ** 2) ** 2, abs=1e-12)
    assert fourier_ipr(cosine(1) + cosine(3)).item() == pytest.approx(0.5, abs=1e-12)


def test_a_dead_neuron_has_ipr_zero_not_nan():
    assert fourier_ipr(torch.zeros(3, P)).tolist() == [0.0, 0.0, 0.0]


def test_per_neuron_ipr_averages_u_v_and_w():
    # Neuron 0 is the analytic periodic solution (Eq. 2), neuron 1 memorizing-like: one-hot U, cosine V, one-hot W.
    delta = torch.zeros(P, dtype=torch.float64)
    delta[5] = 1.0
    u = torch.stack([cosine(3, 0.4), delta])
    v = torch.stack([cosine(3, -1.1), cosine(2)])
    w = torch.stack([cosine(3, 0.7), delta], dim=1)  # (p, N): columns are the neurons' output weights
    ipr = per_neuron_ipr(torch.cat([u, v], dim=1), w)
    assert ipr[0].item() == pytest.approx(1.0, abs=1e-12)
    assert ipr[1].item() == pytest.approx((1 / HALF + 1 + 1 / HALF) / 3, abs=1e-12)
    with pytest.raises(ValueError, match="2p = 22"):
        per_neuron_ipr(torch.zeros(2, 20), w)


def quadratic_net(width: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone({"name": "quadratic_mlp", "width": width}, {"name": "none"}, (1, 2, P), P).eval()


def test_the_quadratic_mlp_is_the_paper_network():
    net = quadratic_net()
    x = torch.zeros(1, 1, 2, P)
    x[0, 0, 0, 2] = x[0, 0, 1, 7] = 1.0
    W_in, W = net.hidden.weight, net.head.weight
    expected = W @ (W_in[:, 2] + W_in[:, P + 7]) ** 2  # W (U e_m + V e_n)^2, no biases
    assert torch.allclose(net(x)[0], expected, atol=1e-6)
    big = build_backbone({"name": "quadratic_mlp", "width": 4000}, {"name": "none"}, (1, 2, 97), 97)
    assert big.hidden.weight.std().item() == pytest.approx((16 * 4000) ** (-1 / 3), rel=0.02)


def test_pruning_zeroes_exactly_the_chosen_neurons_and_leaves_the_rest():
    net = quadratic_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    chosen = torch.tensor([1, 4])
    pruned = pruned_copy(net, chosen)
    kept = torch.tensor([0, 2, 3, 5])
    assert torch.equal(pruned.hidden.weight[chosen], torch.zeros(2, 2 * P))
    assert torch.equal(pruned.head.weight[:, chosen], torch.zeros(P, 2))
    assert torch.equal(pruned.hidden.weight[kept], net.hidden.weight[kept])
    assert torch.equal(pruned.head.weight[:, kept], net.head.weight[:, kept])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the trained network is untouched
    x = torch.randn(5, 1, 2, P)
    h = net.hidden(x.flatten(1)) ** 2
    assert torch.allclose(pruned(x), h[:, kept] @ net.head.weight[:, kept].T, atol=1e-6)


def batches(x, y, size=4):
    return [(x[i:i + size], y[i:i + size], torch.arange(i, min(i + size, len(y)))) for i in range(0, len(y), size)]


def test_the_report_prunes_lowest_and_highest_ipr_first():
    net = quadratic_net(width=10)
    ipr = network_ipr(net)
    x = torch.randn(12, 1, 2, P)
    y = net(x).argmax(-1)
    flipped = (y + 1) % P
    is_noisy = torch.zeros(12, dtype=torch.bool)
    is_noisy[:4] = True
    given = torch.where(is_noisy, flipped, y)  # the network fits the clean part and misses the corrupted part
    reg = create_regularizer("ipr_pruning", fractions=[0.3, 1.0], high_ipr=0.5, bins=4)
    report = reg.train_report(net, batches(x, y), lambda: batches(x, given), is_noisy)
    assert report["ipr"]["mean"] == pytest.approx(ipr.mean().item())
    assert sum(report["ipr"]["histogram"]["counts"]) == 10 and len(report["ipr"]["histogram"]["edges"]) == 5
    assert report["ipr"]["high_fraction"] == pytest.approx((ipr >= 0.5).double().mean().item())
    for order, descending in (("lowest_first", False), ("highest_first", True)):
        rows = report["ipr_pruning"][order]
        assert [(r["fraction"], r["pruned"]) for r in rows] == [(0.0, 0), (0.3, 3), (1.0, 10)]
        assert rows[0] == {"fraction": 0.0, "pruned": 0, "test_acc": 1.0, "train_acc": 8 / 12,
                           "train_clean_acc": 1.0, "train_corrupted_acc": 0.0}
        expected = split_accuracies(pruned_copy(net, torch.argsort(ipr, descending=descending)[:3]), batches(x, y),
                                    batches(x, given), is_noisy)
        assert {k: rows[1][k] for k in expected} == expected
    clean = reg.train_report(net, batches(x, y), lambda: batches(x, y), None)
    assert clean["ipr_pruning"]["lowest_first"][0]["train_corrupted_acc"] is None


@pytest.mark.parametrize("params, message", [
    ({"fractions": []}, "regularizer.ipr_pruning.fractions=[] is invalid"),
    ({"fractions": [0.0]}, "regularizer.ipr_pruning.fractions=[0.0] is invalid"),
    ({"fractions": [1.5]}, "regularizer.ipr_pruning.fractions=[1.5] is invalid"),
    ({"high_ipr": 1.0}, "regularizer.ipr_pruning.high_ipr=1.0 is invalid: must be an IPR in (0, 1)"),
    ({"bins": 1}, "regularizer.ipr_pruning.bins=1 is invalid"),
])
def test_bad_values_are_one_line(params, message):
    with pytest.raises(UserError) as err:
        create_regularizer("ipr_pruning", **{"fractions": [0.5], "high_ipr": 0.5, "bins": 10, **params})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_it_needs_the_quadratic_mlp_and_modular_data():
    reg = create_regularizer("ipr_pruning", fractions=[0.5], high_ipr=0.5, bins=10)
    with pytest.raises(UserError, match="not backbone=mlp; use backbone=quadratic_mlp"):
        reg.check_backbone({"name": "mlp"})
    with pytest.raises(UserError, match="not data=digits; use data=modular"):
        reg.check_stack({"data": {"name": "digits"}}, [])
    compander = create_regularizer("weight_compander")
    with pytest.raises(UserError, match="cannot be stacked with weight_compander: it reparameterizes"):
        reg.check_stack({"data": {"name": "modular"}}, [compander])
    reg.check_stack({"data": {"name": "modular"}}, [create_regularizer("dropout", rate=0.1)])


def test_it_equals_the_ratio_of_numpy_rfft_powers():
    import numpy as np

    x = np.random.default_rng(3).normal(size=(50, 97))
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    reference = (power ** 2).sum(-1) / power.sum(-1) ** 2
    assert np.allclose(fourier_ipr(torch.from_numpy(x)).numpy(), reference, rtol=1e-12, atol=0)


def test_a_head_wrapped_by_dropout_is_pruned_at_its_linear_layer():
    net = create_regularizer("dropout", rate=0.5).wrap_model(quadratic_net()).eval()
    linear = net.head[-1] if isinstance(net.head, torch.nn.Sequential) else None
    assert isinstance(linear, torch.nn.Linear)
    pruned = pruned_copy(net, torch.tensor([0, 3]))
    assert torch.equal(pruned.head[-1].weight[:, [0, 3]], torch.zeros(P, 2))
    assert torch.equal(pruned.head[-1].weight[:, [1, 2, 4, 5]], linear.weight[:, [1, 2, 4, 5]])
    assert network_ipr(net).shape == (6,)
