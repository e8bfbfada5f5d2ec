"""Unified Normalization (Yang et al., 2022, "Unified Normalization for Accelerating and Stabilizing
Transformers"), read from the paper's framework and the authors' code (hikvision-research/Unified-Normalization).

Per channel, with statistics over every other dimension (batch and tokens) and no mean subtraction (mu_hat = 0):
sigma2_t = mean(x^2) of the batch at iteration t (1-based).
Fluctuation smoothing: the forward divides by the GEOMETRIC mean of the last `window` (M) batch statistics,
sigma2_hat = (prod_i sigma2_{t-i})^(1/M); the backward replaces the batch's gradient statistic mean(g * z) by
psi_t = momentum * psi_{t-1} + (1 - momentum) * (ARITHMETIC mean of the last M of them), so
dL/dx = (g - psi_t * z) / sqrt(sigma2_hat + eps), with g = gamma * dL/dy and z = x / sqrt(sigma2_hat + eps).
Adaptive outlier filtration: once the new statistic enters the window, if for any channel
AM(window) - GM(window) > M * Var(sqrt(previous window)) (the AM-GM bound that the window before this batch
satisfies; Var unbiased over the layer's whole window, as the authors' code computes it), the batch is an outlier:
the layer normalizes by the batch's own statistic with psi = mean(g * z) of the batch, and the window keeps the
running statistic (and the previous psi) in the batch's place.
running_var = momentum * running_var + (1 - momentum) * sigma2_hat; inference divides by it, so the layer is a
fixed per-channel affine map (`inference_affine`) that folds into the adjacent linear layer.
The first `warmup_iters` steps (and the first M, while the window fills) normalize by the batch's statistic;
their backward already uses psi as the EMA of the batch's gradient statistic (the authors' code). Not ported: the
authors' code also multiplies the backward by a clamped ratio sqrt(sigma2_hat / running_var) after 1000 steps
("gradient compensation"), which the paper's equations do not have.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.errors import check
from regbench.norms.powernorm import fit_warmup
from regbench.norms.registry import register_norm


def geometric_mean(values: torch.Tensor) -> torch.Tensor:
    """Over dim 0, through logs (the product of M statistics under- or overflows)."""
    return values.log().mean(dim=0).exp()


class UnifiedNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, weight, bias, norm: "UnifiedNorm"):
        norm.iteration += 1
        step = int(norm.iteration)
        slot = step % norm.window
        batch_var = rows.pow(2).mean(dim=0)
        smoothing = step > max(norm.warmup_iters, norm.window)
        filtering = smoothing and norm.outlier_filtration
        if filtering:
            outlier_bound = norm.window * norm.window_var.sqrt().var()  # from the window before this batch
        norm.window_var[slot] = batch_var
        outlier = False
        if filtering:
            window = norm.window_var
            outlier = bool((window.mean(dim=0) - geometric_mean(window) > outlier_bound).any())
            if outlier:
                window[slot] = norm.running_var
                norm.outliers += 1
        var = geometric_mean(norm.window_var) if smoothing and not outlier else batch_var
        scale = var.add(norm.eps).rsqrt()
        z = rows * scale
        norm.running_var.lerp_(var, 1 - norm.momentum)
        ctx.save_for_backward(z, weight, scale)
        ctx.norm, ctx.slot, ctx.smoothing, ctx.outlier = norm, slot, smoothing, outlier
        return z * weight + bias

    @staticmethod
    def backward(ctx, grad_out):
        z, weight, scale = ctx.saved_tensors
        norm = ctx.norm
        g = grad_out * weight
        batch_gz = (g * z).mean(dim=0)
        norm.window_gz[ctx.slot] = norm.psi if ctx.outlier else batch_gz
        window_gz = norm.window_gz.mean(dim=0) if ctx.smoothing and not ctx.outlier else batch_gz
        norm.psi.lerp_(window_gz, 1 - norm.momentum)
        psi = batch_gz if ctx.outlier else norm.psi
        grad_rows = (g - psi * z) * scale
        return grad_rows, (grad_out * z).sum(dim=0), grad_out.sum(dim=0), None


class UnifiedNorm(nn.Module):
    """Unified Normalization over feature dimension `dim`: statistics over every other dimension."""

    def __init__(self, num_features: int, dim: int, window: int, momentum: float, eps: float, warmup_iters: int,
                 outlier_filtration: bool):
        super().__init__()
        self.dim, self.window, self.momentum, self.eps = dim, window, momentum, eps
        self.warmup_iters, self.outlier_filtration = warmup_iters, outlier_filtration
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("psi", torch.zeros(num_features))
        self.register_buffer("window_var", torch.ones(window, num_features))
        self.register_buffer("window_gz", torch.zeros(window, num_features))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("outliers", torch.zeros((), dtype=torch.long))

    def inference_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with y = x * scale + shift per channel: the layer in eval mode."""
        return self.weight * self.running_var.add(self.eps).rsqrt(), self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.movedim(self.dim, -1)
        shape = rows.shape
        rows = rows.reshape(-1, shape[-1])
        if self.training:
            out = UnifiedNormFunction.apply(rows, self.weight, self.bias, self)
        else:
            scale, shift = self.inference_affine()
            out = rows * scale + shift
        return out.reshape(shape).movedim(-1, self.dim)


def make_unified_norm(num_features: int, dim: int, window: int, momentum: float, eps: float, warmup_iters: int,
                      outlier_filtration: bool) -> UnifiedNorm:
    check(isinstance(warmup_iters, int) and not isinstance(warmup_iters, bool) and warmup_iters >= 0,
          "warmup_iters", warmup_iters, "must be an integer >= 0")
    return UnifiedNorm(num_features, dim, window, float(momentum), eps, warmup_iters, outlier_filtration)


def unified_norm_tokens(dim: int, *, window: int, momentum: float, eps: float,
                        warmup_iters: int, outlier_filtration: bool) -> nn.Module:
    return make_unified_norm(dim, -1, window, momentum, eps, warmup_iters, outlier_filtration)


@register_norm("unified_norm", tokens=unified_norm_tokens, fit_run=fit_warmup)
def unified_norm(num_channels: int, *, window: int, momentum: float, eps: float,
                 warmup_iters: int, outlier_filtration: bool) -> nn.Module:
    return make_unified_norm(num_channels, 1, window, momentum, eps, warmup_iters, outlier_filtration)
