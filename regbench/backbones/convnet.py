"""A small fast CNN: (conv3x3 -> norm -> ReLU -> 2x2 max-pool) per stage, global average pool, linear head."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier
from regbench.specs.backbones import BACKBONES
from regbench.norms import NormLayer


class StageOutput(nn.Module):
    """A stage's output, with a `drop_block` slot that regularizer=dropblock fills."""

    def __init__(self):
        super().__init__()
        self.drop_block: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_block(x)


class ConvNet(Classifier):
    def __init__(self, in_chans: int, widths: list[int], num_classes: int, image_size: int, norm_layer: NormLayer,
                 conv_layer: type[nn.Conv2d]):
        super().__init__()
        layers: list[nn.Module] = []
        size = image_size
        # The index in `features` of each stage's last layer; the stage outputs live outside `features`, so its
        # layer indices (and checkpoints' keys) are those of the plain network.
        self.stage_ends: list[int] = []
        for c_in, c_out in zip([in_chans, *widths[:-1]], widths):
            layers += [conv_layer(c_in, c_out, 3, padding=1, bias=False), norm_layer(c_out, act=True)]
            if size >= 2:  # pool while there is space left to pool
                layers.append(nn.MaxPool2d(2))
                size //= 2
            self.stage_ends.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self.stage_outputs = nn.ModuleList(StageOutput() for _ in widths)
        self.num_features = widths[-1]
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        stage = 0
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self.stage_ends[stage]:
                x = self.stage_outputs[stage](x)
                stage += 1
        return x.mean(dim=(2, 3))

    def stage_blocks(self) -> list[list[nn.Module]]:
        return [[output] for output in self.stage_outputs]


@BACKBONES.register("convnet")
def convnet(*, image_shape, num_classes, norm_layer, conv_layer, widths: list[int]) -> ConvNet:
    return ConvNet(image_shape[0], list(widths), num_classes, image_shape[1], norm_layer, conv_layer)
