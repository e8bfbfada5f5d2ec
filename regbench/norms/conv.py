"""Conv factory: plain convs, or Weight-Standardized convs (Qiao et al., 2019) for the ws_* norms."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import UserError


class WSConv2d(nn.Conv2d):
    """Conv whose weight is standardized per output channel: W_hat = (W - mean) / sqrt(var + eps)."""

    eps = 1e-5

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        flat = w.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        var = flat.var(dim=1, unbiased=False).view(-1, 1, 1, 1)
        return (w - mean) / var.add(self.eps).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


CONVS = {"plain": nn.Conv2d, "ws": WSConv2d}


def get_conv(name: str) -> type[nn.Conv2d]:
    if name not in CONVS:
        raise UserError(f"conv {name!r} is not known; allowed: {', '.join(CONVS)}")
    return CONVS[name]


def swap_convs(model: nn.Module, conv_layer: type[nn.Conv2d]) -> None:
    """Turn every nn.Conv2d of a ready-made model into `conv_layer`, keeping its weights (for timm models)."""
    if conv_layer is nn.Conv2d:
        return
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = conv_layer
