"""BatchFormer (Hou, Yu & Tao, "BatchFormer: Learning to Explore Sample Relationships for Robust Representation
Learning", CVPR 2022): in training, a transformer encoder layer runs over the batch dimension of the penultimate
features, so each sample's features attend to the other samples'; the shared head classifies both the original
and the transformed features against the same labels. At evaluation the encoder is skipped: the plain network."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from regbench.errors import UserError, check
from regbench.regularizers.base import MemoryBudget, Regularizer, soft_cross_entropy
from regbench.regularizers.dropout import wrap_head
from regbench.specs.regularizers import REGULARIZERS

# The wrapper's own entries in a checkpoint's state dict: the encoder, and the shared head under `head.head`.
ENCODER_KEY, SHARED_HEAD_KEY = "head.encoder.", "head.head."


def batch_encoder_layer(width: int, num_heads: int, ffn_dim: int, dropout: float) -> nn.TransformerEncoderLayer:
    """The official `TransformerEncoderLayer(C, 4, C, 0.5)`: post-norm, ReLU, sequence-first, so a (B, 1, C) input
    is one sequence of B samples."""
    return nn.TransformerEncoderLayer(width, num_heads, dim_feedforward=ffn_dim, dropout=dropout)


class BatchFormerHead(nn.Module):
    """Training: (B, D) features -> the shared head on [features; encoder(features)] -> (2, B, C) logits, the
    original half first. Evaluation: the head on the features alone -> (B, C)."""

    def __init__(self, head: nn.Module, encoder: nn.TransformerEncoderLayer):
        super().__init__()
        self.head, self.encoder = head, encoder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.head(features)
        transformed = self.encoder(features.unsqueeze(1)).squeeze(1)
        return self.head(torch.cat([features, transformed])).unflatten(0, (2, features.shape[0]))


@REGULARIZERS.register("batchformer")
class BatchFormer(Regularizer):
    name = "batchformer"

    def __init__(self, *, num_heads: int, ffn_dim: int | None, dropout: float, seed: int):
        self.num_heads, self.ffn_dim, self.dropout = num_heads, ffn_dim, float(dropout)

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        for other in others:
            if type(other).task_loss is not Regularizer.task_loss:
                raise UserError(f"regularizer=batchformer cannot be stacked with {other.name}: both widen the "
                                f"training logits (BatchFormer into original and transformed halves), each computing "
                                f"the loss from its own")
            if other.copies_network:
                raise UserError(f"regularizer=batchformer cannot be stacked with {other.name}: its per-network "
                                f"small-loss selection reads (B, C) logits, and BatchFormer gives two per sample")
            if other.wraps_after_others:
                raise UserError(f"regularizer=batchformer cannot be stacked with {other.name}: its weight "
                                f"reparameterization would reach the encoder's linear layers but not the fused "
                                f"attention projection")

    def check_memory(self, budget: MemoryBudget) -> None:
        # The dry-built backbone's feature width, known here with the config checks, is the encoder's width.
        check(budget.num_features % self.num_heads == 0, "num_heads", self.num_heads,
              f"must divide the backbone's feature width {budget.num_features}, the encoder's width")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        width = getattr(model, "num_features", None)
        if width is None:
            raise UserError(f"regularizer=batchformer needs a backbone with `num_features`; "
                            f"{type(model).__name__} has none")
        encoder = batch_encoder_layer(width, self.num_heads, self.ffn_dim or width, self.dropout)
        return wrap_head(model, self.name, lambda head: BatchFormerHead(head, encoder))

    def task_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The official loss is the cross-entropy's mean over the 2B concatenated logits with the labels duplicated:
        per sample, the mean of its two halves' losses against its (possibly mixed) target."""
        return soft_cross_entropy(logits, targets).mean(dim=0)

    def reduce_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The mean of the two halves: loss hooks linear in the targets (TransMix's correction) stay exact."""
        return logits.mean(dim=0)


def plain_state_dict(state_dict: Mapping[str, torch.Tensor], prefix: str = "model.") -> dict[str, torch.Tensor]:
    """The plain network's state dict in a BatchFormer run's checkpoint state dict (`checkpoint["state_dict"]`),
    which keeps the encoder so that a run resumes: the entries under `prefix`, without it and without the encoder,
    the shared head back at `head.`; load it into the backbone built without the regularizer."""
    plain = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        if key.startswith(ENCODER_KEY):
            continue
        plain["head." + key[len(SHARED_HEAD_KEY):] if key.startswith(SHARED_HEAD_KEY) else key] = value
    return plain


__all__ = ["BatchFormer", "BatchFormerHead", "batch_encoder_layer", "plain_state_dict"]
