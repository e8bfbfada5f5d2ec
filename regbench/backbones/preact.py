"""Pre-activation residual networks: PreAct ResNet-18 (He et al., 2016, "Identity Mappings in Deep Residual
Networks") and Wide ResNet (Zagoruyko & Komodakis, 2016, "Wide Residual Networks"), both with CIFAR stems."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier
from regbench.specs.backbones import BACKBONES
from regbench.backbones.resnet import branch_scale, split_stages
from regbench.norms import NormLayer


class PreActBlock(nn.Module):
    """norm-act -> conv3x3 -> norm-act -> conv3x3, added to the input (or to a 1x1 projection of norm-act(x))."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm_layer: NormLayer, conv_layer: type[nn.Conv2d]):
        super().__init__()
        self.norm1 = norm_layer(c_in, act=True)
        self.conv1 = conv_layer(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm2 = norm_layer(c_out, act=True)
        self.conv2 = conv_layer(c_out, c_out, 3, padding=1, bias=False)
        self.scale = branch_scale(norm_layer)
        # regularizer=dropblock replaces this with DropBlock on the branch after its second norm-activation.
        self.drop_block: nn.Module = nn.Identity()
        self.projection = None
        if stride != 1 or c_in != c_out:
            self.projection = conv_layer(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm1(x)
        shortcut = x if self.projection is None else self.projection(out)
        out = self.conv2(self.drop_block(self.norm2(self.conv1(out))))
        return self.scale(out) + shortcut


class PreActResNet(Classifier):
    def __init__(self, in_chans: int, stage_widths: list[int], blocks_per_stage: int, stem_width: int,
                 num_classes: int, norm_layer: NormLayer, conv_layer: type[nn.Conv2d]):
        super().__init__()
        self.stem = conv_layer(in_chans, stem_width, 3, padding=1, bias=False)
        blocks, c_in = [], stem_width
        for i, c_out in enumerate(stage_widths):
            for j in range(blocks_per_stage):
                blocks.append(PreActBlock(c_in, c_out, 2 if (i > 0 and j == 0) else 1, norm_layer, conv_layer))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.blocks_per_stage = [blocks_per_stage] * len(stage_widths)
        self.final_norm = norm_layer(c_in, act=True)
        self.num_features = c_in
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_norm(self.blocks(self.stem(x))).mean(dim=(2, 3))

    def stage_blocks(self) -> list[list[nn.Module]]:
        return split_stages(list(self.blocks), self.blocks_per_stage)


@BACKBONES.register("preact_resnet18")
def preact_resnet18(*, image_shape, num_classes, norm_layer, conv_layer, width: int) -> PreActResNet:
    return PreActResNet(image_shape[0], [width * 2 ** i for i in range(4)], 2, width, num_classes, norm_layer,
                        conv_layer)


@BACKBONES.register("wrn16_4")
def wrn16_4(*, image_shape, num_classes, norm_layer, conv_layer, depth: int,
            widen_factor: int) -> PreActResNet:
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    return PreActResNet(image_shape[0], widths, (depth - 4) // 6, 16, num_classes, norm_layer, conv_layer)
