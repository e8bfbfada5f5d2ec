"""ResNet-18 (He et al., 2016) with the CIFAR stem: 3x3 stride-1 first conv, no max-pool."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier
from regbench.specs.backbones import BACKBONES
from regbench.norms import NormLayer, SkipInit


def branch_scale(norm_layer: NormLayer) -> nn.Module:
    """SkipInit's zero-initialized scalar on each residual branch when there is no norm, else nothing."""
    return SkipInit() if norm_layer.skip_init else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm_layer: NormLayer, conv_layer: type[nn.Conv2d]):
        super().__init__()
        self.conv1 = conv_layer(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(c_out, act=True)
        self.conv2 = conv_layer(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = norm_layer(c_out)
        self.scale = branch_scale(norm_layer)
        # Stochastic depth (regularizer=droppath) replaces this with a per-sample branch drop.
        self.drop_path: nn.Module = nn.Identity()
        # regularizer=dropblock replaces this with DropBlock on the branch after its first norm-activation.
        self.drop_block: nn.Module = nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv_layer(c_in, c_out, 1, stride=stride, bias=False), norm_layer(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_block(self.norm1(self.conv1(x)))
        out = self.scale(self.norm2(self.conv2(out)))
        # The ReLU after the sum pairs with no norm, so it stays even when a norm is its own activation.
        return torch.relu(self.drop_path(out) + self.shortcut(x))


class ResNet(Classifier):
    def __init__(self, in_chans: int, blocks_per_stage: list[int], width: int, num_classes: int,
                 norm_layer: NormLayer, conv_layer: type[nn.Conv2d]):
        super().__init__()
        self.stem = nn.Sequential(conv_layer(in_chans, width, 3, padding=1, bias=False), norm_layer(width, act=True))
        stages, c_in = [], width
        for i, n_blocks in enumerate(blocks_per_stage):
            c_out = width * 2 ** i
            for j in range(n_blocks):
                stages.append(BasicBlock(c_in, c_out, 2 if (i > 0 and j == 0) else 1, norm_layer, conv_layer))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.blocks_per_stage = list(blocks_per_stage)
        self.num_features = c_in
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def stage_blocks(self) -> list[list[nn.Module]]:
        return split_stages(list(self.stages), self.blocks_per_stage)


def split_stages(blocks: list[nn.Module], blocks_per_stage: list[int]) -> list[list[nn.Module]]:
    """The blocks, in forward order, grouped into stages of `blocks_per_stage`."""
    ends = [sum(blocks_per_stage[:i + 1]) for i in range(len(blocks_per_stage))]
    return [blocks[end - count:end] for end, count in zip(ends, blocks_per_stage)]


@BACKBONES.register("resnet18")
def resnet18(*, image_shape, num_classes, norm_layer, conv_layer, width: int) -> ResNet:
    return ResNet(image_shape[0], [2, 2, 2, 2], width, num_classes, norm_layer, conv_layer)
