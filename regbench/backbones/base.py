"""The shape every backbone has: features -> a linear head, so regularizers can wrap the head."""
from __future__ import annotations

import torch
import torch.nn as nn



class Classifier(nn.Module):
    """`forward_features(x) -> (B, num_features)`, then `head`; regularizers may replace `head`."""

    num_features: int
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def apply_norm_1d(norm: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Run a 2-d norm layer on (B, C) features viewed as (B, C, 1, 1)."""
    return norm(features[:, :, None, None]).flatten(1)
