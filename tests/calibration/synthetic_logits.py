"""Logits of a model miscalibrated by a known temperature: labels are drawn from softmax(logits / T)."""
from __future__ import annotations

import torch


def logits_with_temperature(n: int, classes: int, temperature: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator, dtype=torch.float64) * 4
    labels = torch.multinomial((logits / temperature).softmax(dim=-1), 1, generator=generator).squeeze(1)
    return logits, labels
