"""Conv factory: plain convs, or Weight-Standardized convs (Qiao et al., 2019) for the ws_* norms. Both route around
a oneDNN bug of torch 2.14.1 on CPU (see Conv2d)."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.errors import UserError


def _hits_onednn_1x1_bug(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """torch 2.14.1's oneDNN AVX2 `jit_1x1` backward_weights kernel corrupts the heap (the process aborts) for a 1x1
    stride-2 conv with 2 to 7 input channels per group in channels_last layout, when torch runs one thread
    (`OMP_NUM_THREADS=1`, as the claim cards advise on a shared CPU). Such convs are a narrow resnet's shortcuts."""
    # The module's own attributes first: most convs are ruled out without touching the tensor.
    return (conv.kernel_size == (1, 1) and conv.stride != (1, 1) and 2 <= conv.in_channels // conv.groups <= 7
            and x.device.type == "cpu")


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state-dict keys) that gives the convs the oneDNN bug hits the default layout.
    Those convs are tiny, so the copy costs nothing measurable; the result is the same up to float rounding."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if _hits_onednn_1x1_bug(self, x):
            # A 1x1 channels_last weight already counts as contiguous: clone it to the default strides.
            x, weight = x.contiguous(), weight.clone(memory_format=torch.contiguous_format)
        return super()._conv_forward(x, weight, bias)


class WSConv2d(Conv2d):
    """Conv whose weight is standardized per output channel: W_hat = (W - mean) / sqrt(var + eps)."""

    eps = 1e-5

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        flat = w.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        var = flat.var(dim=1, unbiased=False).view(-1, 1, 1, 1)
        return (w - mean) / var.add(self.eps).sqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


CONVS = {"plain": Conv2d, "ws": WSConv2d}


def get_conv(name: str) -> type[nn.Conv2d]:
    if name not in CONVS:
        raise UserError(f"conv {name!r} is not known; allowed: {', '.join(CONVS)}")
    return CONVS[name]


def swap_convs(model: nn.Module, conv_layer: type[nn.Conv2d]) -> None:
    """Turn every nn.Conv2d of a ready-made model into `conv_layer`, keeping its weights (for timm models)."""
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = conv_layer
