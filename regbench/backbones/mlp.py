"""A multi-layer perceptron on flattened pixels."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier, apply_norm_1d
from regbench.backbones.registry import BACKBONES
from regbench.errors import check


class MLP(Classifier):
    def __init__(self, in_features: int, hidden: list[int], num_classes: int, norm_layer: Callable[[int], nn.Module]):
        super().__init__()
        widths = [in_features, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(norm_layer(b) for b in hidden)
        self.num_features = widths[-1]
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for linear, norm in zip(self.linears, self.norms):
            x = torch.relu(apply_norm_1d(norm, linear(x)))
        return x


@BACKBONES.register("mlp")
def mlp(*, image_shape, num_classes, norm_layer, hidden: list[int] = (256, 256)) -> MLP:
    hidden = list(hidden)
    check(len(hidden) > 0 and all(isinstance(h, int) and h > 0 for h in hidden), "hidden", hidden,
          "must be a non-empty list of positive integers")
    channels, height, width = image_shape
    return MLP(channels * height * width, hidden, num_classes, norm_layer)
