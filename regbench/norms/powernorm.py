"""PowerNorm (Shen et al., 2020, "PowerNorm: Rethinking Batch Normalization in Transformers"), Algorithm 1.

Forward: x_hat = x / sqrt(psi2_{t-1} + eps) with the RUNNING quadratic mean psi2 (no mean subtraction),
y = gamma * x_hat + beta, then psi2_t = a_f psi2_{t-1} + (1 - a_f) mean_batch(x^2).
Backward (approximate, a custom autograd Function): g = gamma * dL/dy,
dL/dx = (g - nu_{t-1} * x_hat) / sqrt(psi2_{t-1} + eps), then
nu_t = nu_{t-1} (1 - (1 - a_b) Gamma) + (1 - a_b) Lambda with Gamma = mean(x_hat^2), Lambda = mean(x_hat * g).
The first `warmup_iters` training steps use the batch's own quadratic mean with exact autograd (the authors' code,
sIncerass/powernorm, uses the batch statistic with the approximate backward during its warmup, and additionally
divides each token by its RMS per head group -- GroupScaling -- before the layer; neither is reproduced here).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.errors import check
from regbench.norms.registry import register_norm
from regbench.runshape import RunShape, count_or_fraction


class PowerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_phi, nu, eps: float, alpha_fwd: float, alpha_bkw: float):
        scale = running_phi.add(eps).rsqrt()
        x_hat = x * scale
        with torch.no_grad():
            running_phi.lerp_(x.pow(2).mean(dim=0), 1 - alpha_fwd)
        ctx.save_for_backward(x_hat, weight, scale, nu)
        ctx.alpha_bkw = alpha_bkw
        return x_hat * weight + bias

    @staticmethod
    def backward(ctx, grad_out):
        x_hat, weight, scale, nu = ctx.saved_tensors
        g = grad_out * weight
        grad_x = (g - nu * x_hat) * scale
        gamma_t, lambda_t = x_hat.pow(2).mean(dim=0), (x_hat * g).mean(dim=0)
        nu.mul_(1 - (1 - ctx.alpha_bkw) * gamma_t).add_((1 - ctx.alpha_bkw) * lambda_t)
        return grad_x, (grad_out * x_hat).sum(dim=0), grad_out.sum(dim=0), None, None, None, None, None


class PowerNorm(nn.Module):
    """PowerNorm over feature dimension `dim`: statistics over every other dimension (batch, space, tokens)."""

    def __init__(self, num_features: int, dim: int, alpha_fwd: float, alpha_bkw: float, eps: float,
                 warmup_iters: int):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.alpha_fwd, self.alpha_bkw, self.warmup_iters = alpha_fwd, alpha_bkw, warmup_iters
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_phi", torch.ones(num_features))
        self.register_buffer("nu", torch.zeros(num_features))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def inference_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with y = x * scale + shift per channel: the layer in eval mode."""
        return self.weight * self.running_phi.add(self.eps).rsqrt(), self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.movedim(self.dim, -1)
        shape = rows.shape
        rows = rows.reshape(-1, shape[-1])
        if not self.training:
            scale, shift = self.inference_affine()
            out = rows * scale + shift
        elif self.iteration < self.warmup_iters:
            self.iteration += 1
            batch_phi = rows.pow(2).mean(dim=0)
            with torch.no_grad():
                self.running_phi.lerp_(batch_phi.detach(), 1 - self.alpha_fwd)
            out = rows * batch_phi.add(self.eps).rsqrt() * self.weight + self.bias
        else:
            self.iteration += 1
            out = PowerNormFunction.apply(rows, self.weight, self.bias, self.running_phi, self.nu, self.eps,
                                          self.alpha_fwd, self.alpha_bkw)
        return out.reshape(shape).movedim(-1, self.dim)


def make_powernorm(num_features: int, dim: int, alpha_fwd: float, alpha_bkw: float, eps: float,
                   warmup_iters: int) -> PowerNorm:
    check(isinstance(warmup_iters, int) and not isinstance(warmup_iters, bool) and warmup_iters >= 0,
          "warmup_iters", warmup_iters, "must be an integer >= 0")
    return PowerNorm(num_features, dim, alpha_fwd, alpha_bkw, eps, warmup_iters)


def fit_warmup(params: dict, shape: RunShape) -> dict:
    return {"warmup_iters": count_or_fraction(params["warmup_iters"], shape.total_steps)}


def powernorm_tokens(dim: int, *, alpha_fwd: float, alpha_bkw: float, eps: float,
                     warmup_iters: int) -> nn.Module:
    return make_powernorm(dim, -1, alpha_fwd, alpha_bkw, eps, warmup_iters)


@register_norm("powernorm", tokens=powernorm_tokens, fit_run=fit_warmup)
def powernorm(num_channels: int, *, alpha_fwd: float, alpha_bkw: float, eps: float,
              warmup_iters: int) -> nn.Module:
    return make_powernorm(num_channels, 1, alpha_fwd, alpha_bkw, eps, warmup_iters)
