"""The dropout family: dropout before the classifier, stochastic depth, alpha dropout, multi-sample dropout."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from regbench.devices import format_bytes
from regbench.errors import UserError, check
from regbench.regularizers.base import MemoryBudget, Regularizer, soft_cross_entropy
from regbench.specs.regularizers import REGULARIZERS
from regbench.timm_import import import_timm


def wrap_head(model: nn.Module, name: str, wrap: Callable[[nn.Module], nn.Module]) -> nn.Module:
    if not hasattr(model, "head"):
        raise UserError(f"regularizer={name} needs a backbone with a `head`; {type(model).__name__} has none")
    model.head = wrap(model.head)
    return model


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """Blocks that expose a `drop_path` slot on their residual branch, in forward (definition) order."""
    return [m for m in model.modules() if isinstance(getattr(m, "drop_path", None), nn.Module)]


def linear_drop_probs(drop_prob: float, num_blocks: int) -> list[float]:
    """Huang et al. (2016), eq. 4: survival p_l = 1 - l/L (1 - p_L), i.e. drop probability l/L * (1 - p_L)."""
    return [drop_prob * l / num_blocks for l in range(1, num_blocks + 1)]


@REGULARIZERS.register("dropout")
class Dropout(Regularizer):
    """Dropout on the penultimate features (Srivastava et al., 2014)."""

    name = "dropout"

    def __init__(self, *, rate: float, seed: int):
        self.rate = rate

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return wrap_head(model, self.name, lambda head: nn.Sequential(nn.Dropout(self.rate), head))


@REGULARIZERS.register("droppath")
class DropPathRegularizer(Regularizer):
    """Stochastic depth: each residual branch is dropped per sample with its linear-rule probability and
    rescaled by 1/keep in training (timm.layers.DropPath), so evaluation is the plain network."""

    name = "droppath"

    def __init__(self, *, drop_prob: float, seed: int):
        self.drop_prob = drop_prob

    def wrap_model(self, model: nn.Module) -> nn.Module:
        DropPath = import_timm("timm.layers").DropPath  # timm takes seconds to import; only droppath runs pay

        blocks = residual_blocks(model)
        if not blocks:
            raise UserError(f"regularizer=droppath needs a backbone with residual blocks (e.g. backbone=resnet18); "
                            f"{type(model).__name__} has none")
        for block, prob in zip(blocks, linear_drop_probs(self.drop_prob, len(blocks))):
            block.drop_path = DropPath(prob)
        return model


@REGULARIZERS.register("alpha_dropout")
class AlphaDropoutRegularizer(Regularizer):
    """Alpha dropout (Klambauer et al., 2017) before the classifier: dropped units are set to SELU's negative
    saturation value and an affine correction keeps zero mean and unit variance (torch.nn.AlphaDropout)."""

    name = "alpha_dropout"

    def __init__(self, *, rate: float, seed: int):
        self.rate = rate

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return wrap_head(model, self.name, lambda head: nn.Sequential(nn.AlphaDropout(self.rate), head))


class MultiSampleDropoutHead(nn.Module):
    """Training: `num_samples` dropout masks on the same features through the shared head -> (M, B, C) logits,
    which MultiSampleDropout reduces. Evaluation: one dropout-free pass -> (B, C)."""

    def __init__(self, head: nn.Module, rate: float, num_samples: int):
        super().__init__()
        self.head, self.rate, self.num_samples = head, rate, num_samples

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.head(features)
        keep = 1.0 - self.rate
        masks = features.new_empty((self.num_samples, *features.shape)).bernoulli_(keep).div_(keep)
        return self.head(features * masks)


@REGULARIZERS.register("multisample_dropout")
class MultiSampleDropout(Regularizer):
    name = "multisample_dropout"

    def __init__(self, *, rate: float, num_samples: int, seed: int):
        self.rate, self.num_samples = rate, num_samples

    def check_memory(self, budget: MemoryBudget) -> None:
        if budget.memory is None:
            return
        # Each training step holds, per dropout sample, the (B, D) features twice (mask and dropped copy) and the
        # (B, C) logits: the part of the memory that grows with num_samples.
        features, logits = (budget.batch_size, budget.num_features), (budget.batch_size, budget.num_classes)
        per_sample = (2 * features[0] * features[1] + logits[0] * logits[1]) * torch.float32.itemsize
        memory = budget.memory()
        most = memory.bytes // per_sample
        check(self.num_samples <= most, "num_samples", self.num_samples,
              f"must be at most {most}: {self.num_samples} dropout copies of the {features[0]}x{features[1]} "
              f"features and {logits[0]}x{logits[1]} logits need {format_bytes(self.num_samples * per_sample)} "
              f"in float32, more than the {format_bytes(memory.bytes)} of {memory.device}")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return wrap_head(model, self.name, lambda head: MultiSampleDropoutHead(head, self.rate, self.num_samples))

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Inoue (2019): the mean of the per-mask losses, from the head's (M, B, C) training logits."""
        return soft_cross_entropy(logits, targets).mean(dim=0)

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean(dim=0)
