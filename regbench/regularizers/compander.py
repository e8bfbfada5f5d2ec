"""Weight Compander (Cakaj, Mehnert & Yang, IJCNN 2023): every conv and linear weight becomes w = Psi(v) =
a * f(v / b) with a trained tensor v and a compressing f (arctan; arsinh and erf in Table VII), via
torch.nn.utils.parametrize.

Fixed version: one (a, b) for the whole network, weight decay on Psi(v) (Eq. 5). Learnable version: one
(a, b) pair per layer trained with the weights, weight decay on v only (Sec. III-B).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from regbench.errors import UserError
from regbench.optim import projects_weights
from regbench.regularizers.base import Regularizer
from regbench.specs.norms import NORM_TRAITS
from regbench.specs.placement import split_norm_config
from regbench.specs.regularizers import REGULARIZERS, Exclusion


@dataclass(frozen=True)
class Compander:
    """f, its derivative and inverse; `bound` is sup |f| (|w| < a * bound), inf where f is unbounded."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]
    bound: float


COMPANDERS = {
    "arctan": Compander(torch.atan, lambda x: 1.0 / (1.0 + x * x), torch.tan, math.pi / 2),
    "arsinh": Compander(torch.asinh, lambda x: torch.rsqrt(1.0 + x * x), torch.sinh, math.inf),
    "erf": Compander(torch.erf, lambda x: 2.0 / math.sqrt(math.pi) * torch.exp(-x * x), torch.erfinv, 1.0),
}
# A weight the initializer drew at or beyond a * bound has no v; it starts at this fraction of the bound.
RANGE_MARGIN = 0.999

# Table I (fixed a, b; best of the grid {0.5, 0.6, ..., 1.0}), by (data.name, model): regbench's resnet18 and
# timm's models of the same names.
TABLE_I = {
    ("cifar10", "resnet18"): (1.0, 0.6), ("cifar100", "resnet18"): (0.6, 0.6),
    ("cifar10", "resnet34"): (0.8, 0.5), ("cifar100", "resnet34"): (0.7, 0.8),
    ("cifar10", "resnet50"): (1.0, 0.6), ("cifar100", "resnet50"): (1.0, 0.8),
    ("cifar10", "vgg16_bn"): (0.7, 0.7), ("cifar100", "vgg16_bn"): (0.7, 1.0),
    ("cifar10", "vgg19_bn"): (0.5, 0.7), ("cifar100", "vgg19_bn"): (0.7, 0.8),
}
# Elsewhere: the median of every (a, b) the paper reports (Table I, WRN-28-10, TinyImageNet, ImageNet).
UNTABULATED = (0.7, 0.7)
# The learnable version's initial values (Sec. IV-E).
LEARNABLE_INIT = (0.5, 1.0)


def table_model(backbone: Mapping[str, Any] | None) -> str | None:
    if backbone is None:
        return None
    return backbone.get("model_name") if backbone.get("name") == "timm" else backbone.get("name")


def default_scales(dataset: str | None, backbone: Mapping[str, Any] | None, learnable: bool) -> tuple[float, float]:
    if learnable:
        return LEARNABLE_INIT
    return TABLE_I.get((dataset, table_model(backbone)), UNTABULATED)


class CompanderPsi(nn.Module):
    """The parametrization of one weight: forward(v) = a * f(v / b); right_inverse(w) = b * f^-1(w / a), so
    registering it sets v from the layer's initial weight and the network starts as the plain one."""

    def __init__(self, function: str, a: float, b: float, learnable: bool):
        super().__init__()
        self.function = function
        self.compander = COMPANDERS[function]
        for name, value in (("a", a), ("b", b)):
            if learnable:
                self.register_parameter(name, nn.Parameter(torch.tensor(float(value))))
            else:  # saved in checkpoints all the same
                self.register_buffer(name, torch.tensor(float(value)))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.a * self.compander.forward(v / self.b)

    def derivative(self, v: torch.Tensor) -> torch.Tensor:
        """dPsi/dv = (a / b) * f'(v / b)."""
        return self.a / self.b * self.compander.derivative(v / self.b)

    def clipped(self, w: torch.Tensor) -> torch.Tensor:
        """`w` with weights beyond the range |w| < a * bound moved to RANGE_MARGIN of it."""
        limit = RANGE_MARGIN * float(self.a.detach()) * self.compander.bound
        return w.clamp(-limit, limit)

    @torch.no_grad()
    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return self.b * self.compander.inverse(self.clipped(w) / self.a)


def reparameterized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and linear layer: their weights are companded, nothing else (biases, norms) is."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))]


def psi_of(layer: nn.Module) -> CompanderPsi:
    return layer.parametrizations.weight[0]


def export_plain_weight(layer: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    """State-dict hook: the weight a plain layer would hold, w = Psi(v), saved beside v."""
    state_dict[prefix + "weight"] = layer.weight.detach().clone()


def drop_exported_weight(layer: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load pre-hook: a state dict with v restores v; its exported w (derived from v) is not loaded."""
    if prefix + "parametrizations.weight.original" in state_dict:
        state_dict.pop(prefix + "weight", None)


def plain_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The state dict of the plain network in a compander run's checkpoint state dict (`checkpoint["state_dict"]`):
    the entries under `prefix`, without it, and without v, a and b; load it into the backbone built without
    the regularizer."""
    return {key[len(prefix):]: value for key, value in state_dict.items()
            if key.startswith(prefix) and ".parametrizations." not in key}


@torch.no_grad()
def add_decay_on_psi(layers: Sequence[nn.Module], weight_decay: float) -> None:
    """Weight decay on w = Psi(v) (Eq. 5): the gradient of (weight_decay / 2) * ||Psi(v)||^2, i.e.
    weight_decay * Psi(v) * Psi'(v), added to v's gradient (as SGD's weight_decay adds weight_decay * w to a
    plain weight's)."""
    for layer in layers:
        v = layer.parametrizations.weight.original
        if v.grad is not None:
            psi = psi_of(layer)
            v.grad.add_(psi(v) * psi.derivative(v), alpha=weight_decay)


@REGULARIZERS.register("weight_compander")
class WeightCompander(Regularizer):
    name = "weight_compander"
    # Added after every other technique's changes: co-teaching's peer network is companded too.
    wraps_after_others = True

    def __init__(self, *, function: str, learnable: bool, a: float | None,
                 b: float | None, seed: int, dataset: str | None = None,
                 backbone: Mapping[str, Any] | None = None):
        default_a, default_b = default_scales(dataset, backbone, learnable)
        self.function, self.learnable = function, learnable
        self.a = float(default_a if a is None else a)
        self.b = float(default_b if b is None else b)
        self.layers: list[nn.Module] = []
        # (layers, weight decay on their Psi(v)), set with the optimizer.
        self.decay_on_psi: list[tuple[list[nn.Module], float]] = []

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        optimizer = run["optim"]["name"]
        if optimizer != "sgd":
            raise UserError(f"regularizer=weight_compander needs optim=sgd (the paper's optimizer); optim={optimizer} "
                            f"would need the Powerpropagation fix for adaptive steps, which regbench does not have")
        norm = split_norm_config(run["norm"])[0]
        if NORM_TRAITS[norm].conv != "plain":
            raise UserError(f"regularizer=weight_compander cannot be stacked with norm={norm}: its weight "
                            f"standardization rescales Psi(v), undoing the compander's bound |w| < a * bound")
        if projects_weights(run["optim"]):
            raise UserError("regularizer=weight_compander cannot be stacked with optim.project=true: the projection "
                            "would rescale v, not the weights w = Psi(v) the network uses")
        for other in others:
            if Exclusion.WEIGHT_AVERAGING in other.exclusive:
                raise UserError(f"regularizer=weight_compander cannot be stacked with {other.name}: the average "
                                f"would be of v, not of the weights w = Psi(v) the network uses")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.layers = []
        for name, layer in reparameterized_layers(model):
            psi = CompanderPsi(self.function, self.a, self.b, self.learnable).to(layer.weight.device)
            beyond = int((psi.clipped(layer.weight) != layer.weight).sum())
            if beyond:
                print(f"regbench train: warning: regularizer.weight_compander: {beyond} initial weight(s) of "
                      f"{name or 'the model'} lie at or beyond Psi's range |w| < {self.a * psi.compander.bound:.4g} "
                      f"(a={self.a:g}); they start at {RANGE_MARGIN} of it", file=sys.stderr, flush=True)
            parametrize.register_parametrization(layer, "weight", psi)
            layer.register_state_dict_post_hook(export_plain_weight)
            layer.register_load_state_dict_pre_hook(drop_exported_weight)
            self.layers.append(layer)
        return model

    def configure_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Fixed version: v leaves its decayed group for one without decay that records the decay to put on
        Psi(v) (`decay_on_psi`, added to the gradients in on_before_optimizer_step). Learnable: v keeps the
        usual decay; a and b, 0-d, have none."""
        self.decay_on_psi = []
        if self.learnable:
            return
        by_weight = {id(layer.parametrizations.weight.original): layer for layer in self.layers}
        for group in list(optimizer.param_groups):
            moved = [p for p in group["params"] if id(p) in by_weight]
            if group["weight_decay"] == 0 or not moved:
                continue
            group["params"] = [p for p in group["params"] if id(p) not in by_weight]
            optimizer.add_param_group({"params": moved, "weight_decay": 0.0, "decay_on_psi": group["weight_decay"]})
            self.decay_on_psi.append(([by_weight[id(p)] for p in moved], group["weight_decay"]))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        for layers, weight_decay in self.decay_on_psi:
            add_decay_on_psi(layers, weight_decay)


__all__ = ["COMPANDERS", "CompanderPsi", "TABLE_I", "UNTABULATED", "WeightCompander", "add_decay_on_psi",
           "default_scales", "plain_state_dict"]
