"""AbeT's math against the paper and the official code's formulas (github.com/anonymousoodauthor/abet: nets.py's
LearnedTemperatureClassificationNet, main.py's `ablated_energy` score), by hand: the learned temperature
sigmoid(BN(w . z + b)) > 0, the cosine numerators, the training loss CE(h / T), the score log sum exp(h / T) without
the energy's forefront T, the head put around the classifier whatever the list order, and the refusals."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.regularizers import build_regularizers, create_regularizer
from regbench.regularizers.abet import (TEMPERATURE_FLOOR, CosineNumerator, LearnedTemperatureHead,
                                        ablated_energy_score)
from regbench.run.module import ClassifierModule
from regbench.specs.regularizers import Exclusion

WIDTH, CLASSES = 6, 3


def backbone() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone({"name": "mlp", "hidden": [WIDTH]}, {"name": "batchnorm"}, (1, 2, 2), CLASSES)


def abet(numerator: str = "cosine"):
    return create_regularizer("abet", numerator=numerator)


def temperature_by_hand(head: LearnedTemperatureHead, z: torch.Tensor) -> torch.Tensor:
    """sigmoid(BN(w . z + b)) with the BN's running statistics (evaluation), plus the official 1e-12 floor."""
    linear, norm = head.temperature[0], head.temperature[1]
    y = z @ linear.weight.T + linear.bias
    y = (y - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps) * norm.weight + norm.bias
    return 1 / (1 + torch.exp(-y)) + 1e-12


def cosine_by_hand(weight: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """cos(w_i, z) with the official guard: each vector divided by its norm + 1e-4."""
    out = torch.empty(z.shape[0], weight.shape[0])
    for b in range(z.shape[0]):
        for i in range(weight.shape[0]):
            zb, wi = z[b], weight[i]
            out[b, i] = (zb / (zb.norm() + 1e-4)) @ (wi / (wi.norm() + 1e-4))
    return out


def trained_head(seed: int = 1) -> LearnedTemperatureHead:
    """A head whose BN has moved off its initial running statistics (a few training batches)."""
    torch.manual_seed(seed)
    head = LearnedTemperatureHead(CosineNumerator(WIDTH, CLASSES), WIDTH)
    with torch.no_grad():
        for _ in range(5):
            head(torch.randn(16, WIDTH) * 2 + 1)
    nn.init.normal_(head.temperature[1].weight, 1.0, 0.5)
    return head.eval()


def test_the_temperature_is_sigmoid_of_batchnorm_of_a_linear_map_and_positive():
    head = trained_head()
    z = torch.randn(7, WIDTH) * 3
    temperature = head.temperatures(z)
    assert temperature.shape == (7, 1)
    torch.testing.assert_close(temperature, temperature_by_hand(head, z))
    assert ((temperature > 0) & (temperature <= 1 + TEMPERATURE_FLOOR)).all()
    # Where the sigmoid underflows to 0, the floor keeps T > 0 and the logits finite.
    with torch.no_grad():
        head.temperature[0].weight.fill_(-1e4)
    far = head.temperatures(torch.full((2, WIDTH), 10.0))
    assert (far > 0).all() and torch.isfinite(head(torch.full((2, WIDTH), 10.0))).all()


def test_the_numerators_are_cosine_similarities_to_the_class_vectors():
    head = trained_head()
    z = torch.randn(5, WIDTH)
    numerators = head.numerator(z)
    assert numerators.shape == (5, CLASSES) and (numerators.abs() <= 1).all()
    torch.testing.assert_close(numerators, cosine_by_hand(head.numerator.weight.detach(), z))


def test_the_logits_are_the_numerators_over_the_learned_temperature():
    head = trained_head()
    z = torch.randn(5, WIDTH)
    logits = head(z)
    assert logits.shape == (5, CLASSES)
    by_hand = cosine_by_hand(head.numerator.weight.detach(), z) / temperature_by_hand(head, z)
    torch.testing.assert_close(logits, by_hand)
    # T > 0: the class the logits predict is the numerators' (the official test accuracy takes the logits' argmax).
    assert torch.equal(logits.argmax(dim=1), head.numerator(z).argmax(dim=1))


def test_the_score_is_the_energy_without_its_forefront_temperature_on_a_hand_case():
    # h = (0.5, -0.2, 0.1), T = 0.25: logits h / T = (2, -0.8, 0.4).
    logits = torch.tensor([[0.5, -0.2, 0.1]], dtype=torch.float64) / 0.25  # dividing by 1/4 is exact
    expected = math.log(math.exp(2.0) + math.exp(-0.8) + math.exp(0.4))
    assert ablated_energy_score(logits).item() == pytest.approx(expected, rel=1e-12)
    # The ablation matters: with equal numerators, a colder sample (T = 0.25) scores higher than a warmer one
    # (T = 0.5) under AbeT, while the learned-temperature energy T log sum exp(h / T) ranks them the other way.
    numerators = torch.tensor([[0.5, -0.2, 0.1], [0.5, -0.2, 0.1]])
    temperature = torch.tensor([[0.25], [0.5]])
    abet_scores = ablated_energy_score(numerators / temperature)
    energy_scores = temperature[:, 0].double() * torch.logsumexp((numerators / temperature).double(), dim=1)
    assert abet_scores[0] > abet_scores[1] and energy_scores[0] < energy_scores[1]


def test_the_regularizers_ood_score_reads_the_wrapped_network():
    model = abet().wrap_model(backbone())
    assert isinstance(model.head, LearnedTemperatureHead) and isinstance(model.head.numerator, CosineNumerator)
    model.eval()
    images = torch.randn(4, 1, 2, 2)
    with torch.no_grad():
        z = model.forward_features(images)
        by_hand = torch.logsumexp((model.head.numerator(z) / model.head.temperatures(z)).double(), dim=1)
        torch.testing.assert_close(abet().ood_score(model, images), by_hand)


def test_the_inner_numerator_is_the_backbones_linear_head():
    plain = backbone()
    linear = plain.head
    model = abet("inner").wrap_model(plain).eval()
    assert model.head.numerator is linear
    z = torch.randn(3, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(model.head(z), (z @ linear.weight.T + linear.bias) / model.head.temperatures(z))


@pytest.mark.parametrize("order", [("dropout", "abet"), ("abet", "dropout")])
def test_a_feature_dropout_sits_before_the_temperature_head_whatever_the_order(order):
    model = backbone()
    for name in order:
        model = (abet() if name == "abet" else create_regularizer("dropout", rate=0.5)).wrap_model(model)
    assert isinstance(model.head, nn.Sequential) and isinstance(model.head[0], nn.Dropout)
    assert isinstance(model.head[1], LearnedTemperatureHead)


def test_the_training_loss_is_cross_entropy_of_the_tempered_logits_and_trains_the_temperature():
    module = ClassifierModule(backbone(), [abet()], CLASSES, {"name": "sgd", "lr": 0.5, "momentum": 0.0},
                              {"name": "constant"})
    torch.manual_seed(3)
    images, labels = torch.randn(8, 1, 2, 2), torch.randint(0, CLASSES, (8,))
    module.train()
    loss = module.training_loss((images, labels, torch.arange(8)), 0)
    # By hand, from the parts (the BN layers saw the batch once more in training mode: their batch statistics are
    # the same, so the forward is too).
    head = module.model.head
    z = module.model.forward_features(images)
    logits = head.numerator(z) / (torch.sigmoid(head.temperature[1](head.temperature[0](z))) + 1e-12)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    before = head.temperature[0].weight.detach().clone()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not torch.equal(head.temperature[0].weight, before)


def test_it_is_a_trained_ood_method_and_refuses_stacks_its_head_cannot_join():
    assert Exclusion.OOD_METHOD in create_regularizer("abet").exclusive
    run = {"data": {"name": "digits"}, "norm": {"name": "batchnorm"}, "optim": {"name": "sgd"}}
    for other, params in (("batchformer", {"num_heads": 4, "ffn_dim": None, "dropout": 0.5}),
                          ("multisample_dropout", {"rate": 0.5, "num_samples": 2})):
        with pytest.raises(UserError, match=f"regularizer=abet cannot be stacked with {other}: "):
            build_regularizers({"abet": {"numerator": "cosine"}, other: params}, seed=0, run=run)


def test_a_numerator_outside_the_allowed_ones_is_refused():
    with pytest.raises(Exception, match=r"numerator='euclidean' is invalid: must be one of cosine, inner"):
        abet("euclidean")


def test_a_head_that_is_not_a_linear_classifier_is_refused():
    model = backbone()
    model.head = nn.Sequential(nn.Linear(WIDTH, CLASSES), nn.ReLU())
    with pytest.raises(UserError, match="regularizer=abet needs a backbone whose head is a linear classifier"):
        abet().wrap_model(model)
