"""The two-layer MLP of the grokking papers (Gromov, 2023; Doshi et al., ICLR 2024, Eq. 1): f = W phi(W_in x) with
phi(z) = z^2, no biases, both weights drawn from N(0, (16 N)^(-2/3)) (Appendix A). A norm, if any, acts after the
square (the paper's post-BN, Eq. 5)."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier, apply_norm_1d
from regbench.specs.backbones import BACKBONES
from regbench.norms import NormLayer


def paper_init_std(width: int) -> float:
    """(16 N)^(-1/3): the standard deviation of the paper's N(0, (16 N)^(-2/3))."""
    return (16 * width) ** (-1 / 3)


class QuadraticMLP(Classifier):
    """`hidden` holds W_in (row k: neuron k's input weights, U then V for modular's e_m (+) e_n); `head` is W."""

    def __init__(self, in_features: int, width: int, num_classes: int, norm_layer: NormLayer):
        super().__init__()
        self.hidden = nn.Linear(in_features, width, bias=False)
        self.norm = norm_layer(width)
        self.num_features = width
        self.head = nn.Linear(width, num_classes, bias=False)
        for linear in (self.hidden, self.head):
            nn.init.normal_(linear.weight, std=paper_init_std(width))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return apply_norm_1d(self.norm, self.hidden(x.flatten(1)) ** 2)


# Its activation is the square: a norm that brings its own activation cannot stand in for it.
@BACKBONES.register("quadratic_mlp")
def quadratic_mlp(*, image_shape, num_classes, norm_layer, conv_layer, width: int) -> QuadraticMLP:
    channels, height, image_width = image_shape
    return QuadraticMLP(channels * height * image_width, width, num_classes, norm_layer)
