"""A multi-layer perceptron on flattened pixels."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier, apply_norm_1d
from regbench.specs.backbones import BACKBONES
from regbench.norms import NormLayer


class MLP(Classifier):
    def __init__(self, in_features: int, hidden: list[int], num_classes: int, norm_layer: NormLayer):
        super().__init__()
        widths = [in_features, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(norm_layer(b, act=True) for b in hidden)
        self.num_features = widths[-1]
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for linear, norm in zip(self.linears, self.norms):
            x = apply_norm_1d(norm, linear(x))
        return x


# An MLP has no convolutions: `conv_layer` is accepted like every backbone's and unused (compat refuses ws norms).
@BACKBONES.register("mlp")
def mlp(*, image_shape, num_classes, norm_layer, conv_layer, hidden: list[int]) -> MLP:
    channels, height, width = image_shape
    return MLP(channels * height * width, list(hidden), num_classes, norm_layer)
