"""DropBlock (Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks", NeurIPS 2018):
zero square blocks of a feature map in training, with the rate the paper ramps up over training, and the
depth-progressive rate of Vir, "Balanced Multi-Task Attention for Satellite Image Classification" (2025).

Algorithm 1 of the paper: draw block seeds with probability gamma, only where a whole block fits in the map
(Figure 2's valid region); grow each seed into a block_size x block_size block of zeros; multiply the features
by the mask and rescale them by count(M) / count_ones(M). Eq. 1 sets gamma so that about `rate` of the units
are dropped: gamma = rate / block_size^2 * feat_size^2 / (feat_size - block_size + 1)^2, taken here per
spatial dimension (H x W maps).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.specs.backbones import BACKBONE_TRAITS, BACKBONES
from regbench.errors import UserError
from regbench.regularizers.base import Regularizer, TrainProgress
from regbench.specs.regularizers import REGULARIZERS


def seed_probability(rate: float, block: tuple[int, int], height: int, width: int) -> float:
    """Eq. 1 per spatial dimension: the chance that a unit seeds a block, so that about `rate` of the map is
    dropped (the valid region has (H - kh + 1)(W - kw + 1) seeds, each dropping kh kw units)."""
    kh, kw = block
    return rate * height * width / (kh * kw) / ((height - kh + 1) * (width - kw + 1))


def blocks_from_seeds(seeds: torch.Tensor, block: tuple[int, int], seed_region: str) -> torch.Tensor:
    """1 where a unit lies in the block of some seed. `valid`: seeds are (B, C, H - kh + 1, W - kw + 1), seed
    (i, j) blocking rows i..i+kh-1 and columns j..j+kw-1, so every block lies inside the map (the paper).
    `whole`: seeds are (B, C, H, W), each the centre of its block (for an even side, the block reaches one unit
    further up/left), clipped at the border (timm's drop_block_2d)."""
    kh, kw = block
    if seed_region == "valid":
        return F.max_pool2d(F.pad(seeds, (kw - 1, kw - 1, kh - 1, kh - 1)), (kh, kw), stride=1)
    blocked = F.max_pool2d(seeds, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return blocked[..., (kh + 1) % 2:, (kw + 1) % 2:]  # an even kernel pools one row/column too many


def drop_block(features: torch.Tensor, rate: float, block_size: int, seed_region: str = "valid",
               share_mask_across_channels: bool = False) -> torch.Tensor:
    """DropBlock on (B, C, H, W) features. A block larger than the map is clipped to it (timm does the same);
    the mask is drawn per feature map (the paper: "on every feature map ... we first sample a mask"), or once
    per sample for all channels (timm's default, `couple_channels`)."""
    batch, channels, height, width = features.shape
    block = (min(block_size, height), min(block_size, width))
    gamma = seed_probability(rate, block, height, width)
    seed_shape = (height - block[0] + 1, width - block[1] + 1) if seed_region == "valid" else (height, width)
    with torch.no_grad():
        seeds = features.new_empty((batch, 1 if share_mask_across_channels else channels, *seed_shape))
        keep = 1.0 - blocks_from_seeds(seeds.bernoulli_(gamma), block, seed_region)
        # count(M) / count_ones(M) over the whole batch; the epsilon only guards a mask with nothing kept.
        scale = keep.numel() / keep.to(torch.float32).sum().add(1e-7)
        keep.mul_(scale.to(features.dtype))
    return features * keep


class DropBlock2d(nn.Module):
    """DropBlock in one slot of a backbone; `rate` is set by DropBlockRegularizer as training goes on, and
    evaluation leaves the features as they are."""

    def __init__(self, stage_rate: float, rate: float, block_size: int, seed_region: str,
                 share_mask_across_channels: bool):
        super().__init__()
        self.stage_rate = stage_rate  # the rate this slot reaches once the schedule has ramped up
        self.rate = rate
        self.block_size, self.seed_region = block_size, seed_region
        self.share_mask_across_channels = share_mask_across_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return features
        return drop_block(features, self.rate, self.block_size, self.seed_region, self.share_mask_across_channels)

    def extra_repr(self) -> str:
        return (f"stage_rate={self.stage_rate}, block_size={self.block_size}, seed_region={self.seed_region}, "
                f"share_mask_across_channels={self.share_mask_across_channels}")


def stage_rates(rate: float, stages: Sequence[int], num_stages: int, depth_rule: str) -> dict[int, float]:
    """The rate of each chosen stage (1-based) of a backbone with `num_stages`: `uniform`, the same everywhere
    (the DropBlock paper); `linear`, stage s of S gets rate * s / S, growing with depth to `rate` at the last
    stage (the EuroSAT paper's code: 0.05, 0.10, 0.15, 0.20 on its four stages for rate 0.2)."""
    if depth_rule == "uniform":
        return {stage: rate for stage in stages}
    return {stage: rate * stage / num_stages for stage in stages}


def schedule_factor(schedule: str, step: int, total_steps: int) -> float:
    """The share of each slot's rate after `step` of `total_steps` optimizer steps: `ramp` grows it linearly
    from 0 to 1 over training (the paper: keep_prob decreases linearly from 1 to its target); `constant` is 1."""
    if schedule == "constant":
        return 1.0
    return min(1.0, step / total_steps)


def backbone_stage_count(backbone: Mapping[str, Any]) -> int:
    """How many convolutional stages DropBlock can go into on this backbone config; one UserError line for a
    backbone without any (mlp, vit_tiny, timm)."""
    name = backbone["name"]
    BACKBONES.entry(name)  # an unknown name is one line listing the known ones
    count_stages = BACKBONE_TRAITS[name].conv_stages
    if count_stages is None:
        raise UserError(f"regularizer=dropblock needs a backbone with convolutional stages (convnet, resnet18, "
                        f"preact_resnet18, wrn16_4); backbone={name} has none it can drop blocks in")
    return count_stages(BACKBONES.with_defaults(name, {k: v for k, v in backbone.items() if k != "name"}))


@REGULARIZERS.register("dropblock")
class DropBlockRegularizer(Regularizer):
    """DropBlock in every residual block of the chosen stages, on the branch after its first convolution's
    norm-activation (the EuroSAT paper's placement); on convnet, on each chosen stage's (pooled) output."""

    name = "dropblock"

    def __init__(self, *, rate: float, block_size: int, stages: Sequence[int] | str, depth_rule: str,
                 schedule: str, seed_region: str, share_mask_across_channels: bool, seed: int):
        self.rate, self.block_size, self.stages = rate, block_size, stages
        self.depth_rule, self.schedule, self.seed_region = depth_rule, schedule, seed_region
        self.share_mask_across_channels = share_mask_across_channels

    def chosen_stages(self, num_stages: int) -> list[int]:
        return list(range(1, num_stages + 1)) if self.stages == "all" else list(self.stages)

    def check_backbone(self, backbone: Mapping[str, Any]) -> None:
        num_stages = backbone_stage_count(backbone)
        missing = [stage for stage in self.chosen_stages(num_stages) if stage > num_stages]
        if missing:
            raise UserError(f"regularizer.dropblock.stages={list(self.stages)}: backbone={backbone['name']} has no "
                            f"stage {missing[0]}; allowed: 'all' or stage numbers 1..{num_stages}")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        if not hasattr(model, "stage_blocks"):
            raise UserError(f"regularizer=dropblock needs a backbone with convolutional stages; "
                            f"{type(model).__name__} has none")
        stages = model.stage_blocks()
        start = schedule_factor(self.schedule, 0, 1)
        for stage, rate in stage_rates(self.rate, self.chosen_stages(len(stages)), len(stages),
                                       self.depth_rule).items():
            for block in stages[stage - 1]:
                block.drop_block = DropBlock2d(rate, rate * start, self.block_size, self.seed_region,
                                               self.share_mask_across_channels)
        return model

    def on_train_batch_end(self, model: nn.Module, progress: TrainProgress) -> None:
        if self.schedule == "constant":
            return
        # Walks the model it is given, so copies of the network (co-teaching's pair) follow the schedule too.
        factor = schedule_factor(self.schedule, progress.step, progress.total_steps)
        for module in model.modules():
            if isinstance(module, DropBlock2d):
                module.rate = module.stage_rate * factor
