"""Weight Compander against the paper's formulas (Cakaj et al. 2023, Eq. 1-5, Table I, Table VII): Psi, its
derivative and inverse, a network that starts as the plain one, weight decay on Psi(v) (fixed) or on v
(learnable), checkpoints that load as the plain network, and the stacks it refuses."""
import copy
import math

import pytest
import torch
import torch.nn as nn
from scipy import special

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.optim import build_optimizer
from regbench.regularizers import build_regularizers, create_regularizer
from regbench.regularizers.compander import COMPANDERS, CompanderPsi, plain_state_dict
from regbench.run.module import ClassifierModule
from regbench.specs.regularizer_values import COMPANDER_FUNCTIONS

# The paper's Psi and dPsi/dv, written out elementwise (Eq. 1-3; Table VII's arsinh and erf).
PAPER = {
    "arctan": (lambda v, a, b: a * math.atan(v / b), lambda v, a, b: a / (b * (1 + v * v / (b * b))), math.pi / 2),
    "arsinh": (lambda v, a, b: a * math.asinh(v / b), lambda v, a, b: a / (b * math.sqrt(1 + v * v / (b * b))),
               math.inf),
    "erf": (lambda v, a, b: a * math.erf(v / b),
            lambda v, a, b: a * 2 / math.sqrt(math.pi) * math.exp(-(v / b) ** 2) / b, 1.0),
}
OPTIM = {"name": "sgd", "lr": 0.1, "weight_decay": 0.05, "momentum": 0.9, "nesterov": True}
SCHED = {"name": "constant"}
RUN = {"data": {"name": "digits"}, "norm": {"name": "batchnorm"}, "optim": OPTIM}


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)


def compander(**params):
    return create_regularizer("weight_compander", **params)


@pytest.mark.parametrize("function", list(PAPER))
@pytest.mark.parametrize("a,b", [(1.0, 0.6), (0.5, 1.0), (0.7, 0.8)])
def test_psi_its_derivative_and_inverse_follow_the_paper(function, a, b):
    psi = CompanderPsi(function, a, b, learnable=False).double()
    formula, derivative, bound = PAPER[function]
    v = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    w = psi(v)
    assert torch.allclose(w, torch.tensor([formula(x, a, b) for x in v.tolist()], dtype=torch.float64))
    (autograd,) = torch.autograd.grad(w.sum(), v)
    expected = torch.tensor([derivative(x, a, b) for x in v.tolist()], dtype=torch.float64)
    assert torch.allclose(autograd, expected) and torch.allclose(psi.derivative(v.detach()), expected)
    # Eq. 4: v = b * f^-1(w0 / a) gives back w0 inside the range |w| < a * bound.
    w0 = torch.linspace(-0.95, 0.95, 39, dtype=torch.float64) * min(a * bound, 2.0)
    assert torch.allclose(psi(psi.right_inverse(w0)), w0)
    assert torch.all(w.abs() < a * bound)


def test_erf_inverse_matches_scipy():
    psi = CompanderPsi("erf", 0.7, 0.8, learnable=False).double()
    w0 = torch.linspace(-0.69, 0.69, 23, dtype=torch.float64)
    assert torch.allclose(psi.right_inverse(w0), 0.8 * torch.from_numpy(special.erfinv(w0.numpy() / 0.7)))


@pytest.mark.parametrize("function", list(PAPER))
@pytest.mark.parametrize("learnable", [False, True])
def test_the_network_starts_as_the_plain_one(function, learnable):
    backbone = {"name": "convnet", "widths": [8, 16]}
    torch.manual_seed(0)
    plain = build_backbone(backbone, {"name": "batchnorm"}, (1, 8, 8), 10).eval()
    reparameterized = compander(function=function, learnable=learnable).wrap_model(copy.deepcopy(plain)).eval()
    images = torch.randn(16, 1, 8, 8)
    assert (reparameterized(images) - plain(images)).abs().max() < 1e-5


def test_only_conv_and_linear_weights_are_reparameterized():
    model = compander().wrap_model(small_net())
    companded = sorted(name for name, module in model.named_modules() if hasattr(module, "parametrizations"))
    assert companded == ["0", "4"]
    names = {name for name, _ in model.named_parameters()}
    assert {"0.bias", "1.weight", "1.bias", "4.bias"} <= names
    assert {"0.parametrizations.weight.original", "4.parametrizations.weight.original"} <= names
    assert "0.weight" not in names and "4.weight" not in names


def test_a_weight_beyond_the_range_starts_at_its_edge_with_a_warning(capsys):
    model = small_net()
    with torch.no_grad():
        model[4].weight[0, 0] = 2.0  # arctan with a=0.5 reaches only 0.5 * pi / 2 = 0.785
    inside = model[4].weight[1].clone()
    compander(a=0.5, b=1.0).wrap_model(model)
    assert torch.isclose(model[4].weight[0, 0], torch.tensor(0.999 * 0.5 * math.pi / 2))
    assert torch.allclose(model[4].weight[1], inside, atol=1e-6)
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "1 initial weight(s) of 4 lie at or beyond Psi's range |w| < 0.7854" in warning


def step_with(reg, model, steps: int = 3):
    optimizer = build_optimizer(OPTIM, model)
    reg.configure_optimizer(optimizer)
    for seed in range(steps):
        images, labels = batch(seed)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        reg.on_before_optimizer_step(optimizer)
        optimizer.step()
    return optimizer


def test_fixed_weight_decay_acts_on_psi_of_v():
    """Eq. 5: SGD with weight_decay on the companded net = SGD without decay on v of the loss plus
    (weight_decay / 2) * ||Psi(v)||^2; the conv/linear v have no decay of their own."""
    reg = compander(a=0.7, b=0.6)
    model = reg.wrap_model(small_net())
    reference = copy.deepcopy(model)
    optimizer = step_with(reg, model)
    decayed_on_psi = [g for g in optimizer.param_groups if "decay_on_psi" in g]
    assert len(decayed_on_psi) == 1 and decayed_on_psi[0]["weight_decay"] == 0.0
    assert decayed_on_psi[0]["decay_on_psi"] == OPTIM["weight_decay"] and len(decayed_on_psi[0]["params"]) == 2
    assert all(not g["params"] for g in optimizer.param_groups if g["weight_decay"] > 0)

    by_hand = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    for seed in range(3):
        images, labels = batch(seed)
        by_hand.zero_grad()
        penalty = sum((m.weight ** 2).sum() for m in (reference[0], reference[4]))
        (nn.functional.cross_entropy(reference(images), labels) + OPTIM["weight_decay"] / 2 * penalty).backward()
        by_hand.step()
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_learnable_version_trains_a_and_b_per_layer_and_decays_v_only():
    reg = compander(learnable=True)
    model = reg.wrap_model(small_net())
    scales = {name: p for name, p in model.named_parameters() if name.endswith((".a", ".b"))}
    assert sorted(scales) == ["0.parametrizations.weight.0.a", "0.parametrizations.weight.0.b",
                              "4.parametrizations.weight.0.a", "4.parametrizations.weight.0.b"]
    initial = {name: p.item() for name, p in scales.items()}
    assert list(initial.values()) == [0.5, 1.0, 0.5, 1.0]
    optimizer = step_with(reg, model)
    assert not any("decay_on_psi" in g for g in optimizer.param_groups)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].parametrizations.weight.original), id(model[4].parametrizations.weight.original)}
    assert all(p.item() != initial[name] for name, p in scales.items())


def test_table_one_gives_the_fixed_defaults_and_explicit_values_win():
    def scales(data, backbone, **params):
        reg, = build_regularizers({"weight_compander": params}, seed=0, backbone=backbone,
                                  run={**RUN, "data": {"name": data}})
        return reg.a, reg.b

    assert scales("cifar10", {"name": "resnet18"}) == (1.0, 0.6)
    assert scales("cifar100", {"name": "resnet18"}) == (0.6, 0.6)
    assert scales("cifar100", {"name": "timm", "model_name": "resnet50"}) == (1.0, 0.8)
    assert scales("cifar10", {"name": "timm", "model_name": "vgg19_bn"}) == (0.5, 0.7)
    assert scales("digits", {"name": "convnet"}) == (0.7, 0.7)
    assert scales("cifar10", {"name": "resnet18"}, learnable=True) == (0.5, 1.0)
    assert scales("cifar10", {"name": "resnet18"}, a=0.9) == (0.9, 0.6)


def test_checkpoint_state_loads_into_the_plain_network_and_back():
    reg = compander()
    model = reg.wrap_model(small_net())
    step_with(reg, model)
    module_state = {f"model.{k}": v for k, v in model.state_dict().items()}
    plain = small_net()
    plain.load_state_dict(plain_state_dict(module_state))  # strict: exactly the plain network's keys
    images, _ = batch(9)
    model.eval(), plain.eval()
    assert torch.allclose(plain(images), model(images), atol=1e-6)
    # And back into a companded network: v, a and b restored exactly, the exported w ignored.
    again = compander().wrap_model(small_net())
    again.load_state_dict(model.state_dict())
    assert torch.equal(again[0].parametrizations.weight.original, model[0].parametrizations.weight.original)


def test_it_wraps_after_co_teaching_so_both_networks_are_companded_and_differ():
    regs = build_regularizers({"weight_compander": {}, "coteaching": {"forget_rate": 0.2, "num_gradual": 1,
                                                                        "schedule": "paper"}}, seed=0)
    module = ClassifierModule(small_net(), regs, 3, OPTIM, SCHED)
    net, peer = module.model.nets
    assert hasattr(net[0], "parametrizations") and hasattr(peer[0], "parametrizations")
    assert not torch.equal(net[0].weight, peer[0].weight)


@pytest.mark.parametrize("change,message", [
    ({"optim": {"name": "adamw"}}, "regularizer=weight_compander needs optim=sgd (the paper's optimizer); "
                                   "optim=adamw would need the Powerpropagation fix"),
    ({"optim": {"name": "sgdp"}}, "optim=sgdp would need"),
    ({"norm": {"name": "ws_batchnorm"}}, "regularizer=weight_compander cannot be stacked with norm=ws_batchnorm: "
                                         "its weight standardization rescales Psi(v)"),
    ({"norm": {"name": "bcn_ws"}}, "cannot be stacked with norm=bcn_ws"),
    ({"regularizer": {"ema": {"decay": 0.9}}}, "regularizer=weight_compander cannot be stacked with ema: the average "
                                               "would be of v"),
    ({"regularizer": {"swa": {"start": 0.5}}}, "cannot be stacked with swa"),
])
def test_incompatible_stacks_are_refused_in_one_line(change, message):
    others = change.pop("regularizer", {})
    with pytest.raises(UserError) as err:
        build_regularizers({**others, "weight_compander": {}}, seed=0, run={**RUN, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key,value,allowed", [
    ("function", "tanh", "allowed: arctan, arsinh, erf"),
    ("learnable", "yes", "must be true or false"),
    ("a", 0, "must be a number > 0"),
    ("b", -0.5, "must be a number > 0"),
    ("a", True, "must be a number > 0"),
    ("b", float("inf"), "must be a number > 0"),
])
def test_bad_values_are_refused_naming_the_key(key, value, allowed):
    with pytest.raises(UserError) as err:
        build_regularizers({"weight_compander": {key: value}}, seed=0)
    assert str(err.value).startswith(f"regularizer.weight_compander.{key}={value!r} is invalid: {allowed}")


def test_normalize_and_project_is_refused_with_the_compander():
    from regbench.regularizers import build_regularizers

    run = {"data": {"name": "digits"}, "optim": {"name": "sgd", "project": True}, "norm": {"name": "batchnorm"}}
    with pytest.raises(UserError, match=r"weight_compander cannot be stacked with optim.project=true"):
        build_regularizers({"weight_compander": {}}, seed=0, backbone={"name": "convnet"}, run=run)


def test_the_config_allows_exactly_the_functions_the_compander_has():
    """regularizer.weight_compander.function is checked torch-free against the names the compander module codes."""
    assert COMPANDER_FUNCTIONS == tuple(COMPANDERS)
    with pytest.raises(UserError, match=r"^regularizer.weight_compander.function='tanh' is invalid: allowed: arctan, "
                                        r"arsinh, erf$"):
        create_regularizer("weight_compander", function="tanh")
