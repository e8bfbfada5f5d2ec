"""A small fast CNN: (conv3x3 -> norm -> ReLU -> 2x2 max-pool) per stage, global average pool, linear head."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier, check_widths
from regbench.backbones.registry import register_backbone
from regbench.norms import NormLayer


class ConvNet(Classifier):
    def __init__(self, in_chans: int, widths: list[int], num_classes: int, image_size: int, norm_layer: NormLayer,
                 conv_layer: type[nn.Conv2d]):
        super().__init__()
        layers: list[nn.Module] = []
        size = image_size
        for c_in, c_out in zip([in_chans, *widths[:-1]], widths):
            layers += [conv_layer(c_in, c_out, 3, padding=1, bias=False), norm_layer(c_out, act=True)]
            if size >= 2:  # pool while there is space left to pool
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.num_features = widths[-1]
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@register_backbone("convnet")
def convnet(*, image_shape, num_classes, norm_layer, conv_layer, widths: list[int] = (32, 64, 128)) -> ConvNet:
    return ConvNet(image_shape[0], check_widths("widths", widths), num_classes, image_shape[1], norm_layer, conv_layer)
