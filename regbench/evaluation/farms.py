"""FARMS (Hu et al., "Eigenspectrum Analysis of Neural Networks without Aspect Ratio Bias", ICML 2025): the
heavy-tail exponent of a layer's empirical spectral density (ESD) measured on submatrices of one fixed aspect ratio,
so that layers of different shapes are compared alike. Each conv weight is read as a (out, in * kh * kw) matrix,
transposed to be at least as tall as wide; overlapping submatrices of `aspect_ratio` rows per column cover it;
the eigenvalues of every submatrix's X^T X are pooled into one ESD, and the power-law exponent alpha of its tail is
the continuous maximum-likelihood (Hill) estimate from xmin on, xmin the median eigenvalue (as the official code's
image-classification runs fit it) or the one of smallest Kolmogorov-Smirnov distance (Clauset, Shalizi and Newman
2009)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from regbench.specs.evaluation import EVALUATIONS

FARMS_KEY = "farms"
# How xmin, where the power-law tail starts, is chosen (see power_law_alpha).
# Eigenvalues below this share of the largest are numerical zeros (rank-deficient submatrices), left out.
ZERO_EIGENVALUE = 1e-12


def windows(length: int, size: int) -> list[int]:
    """Start positions of ceil(length / size) windows of `size` spread evenly over [0, length - size]: the fewest
    that cover every position, overlapping where size does not divide length."""
    count = math.ceil(length / size)
    if count == 1:
        return [0]
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def submatrix_shape(rows: int, cols: int, aspect_ratio: float) -> tuple[int, int]:
    """(h, w) with h / w = aspect_ratio (rounded), as large as fits in a rows x cols matrix (rows >= cols)."""
    width = max(1, min(cols, math.floor(rows / aspect_ratio)))
    return min(rows, round(aspect_ratio * width)), width


def submatrices(matrix: torch.Tensor, aspect_ratio: float) -> list[torch.Tensor]:
    """The fixed-aspect-ratio submatrices covering `matrix` (transposed first when wider than tall)."""
    if matrix.shape[0] < matrix.shape[1]:
        matrix = matrix.T
    height, width = submatrix_shape(*matrix.shape, aspect_ratio)
    return [matrix[r:r + height, c:c + width] for r in windows(matrix.shape[0], height)
            for c in windows(matrix.shape[1], width)]


def pooled_esd(matrix: torch.Tensor, aspect_ratio: float) -> np.ndarray:
    """The eigenvalues of X^T X of every submatrix X, pooled and sorted, numerical zeros left out."""
    eigenvalues = np.concatenate([torch.linalg.svdvals(block.double()).pow(2).numpy()
                                  for block in submatrices(matrix.detach().cpu(), aspect_ratio)])
    eigenvalues = np.sort(eigenvalues)
    return eigenvalues[eigenvalues > ZERO_EIGENVALUE * eigenvalues[-1]] if eigenvalues[-1] > 0 else eigenvalues[:0]


def power_law_alpha(values: np.ndarray, xmin_rule: str) -> tuple[float, float]:
    """(alpha, xmin) of the power law p(x) ~ x^-alpha for x >= xmin fitted to the tail of positive `values` by the
    continuous MLE alpha = 1 + n / sum(ln(x_i / xmin)) over the n values at or above xmin. xmin_rule `median`: xmin
    is the median value (the official code's `pl_fitting=median`, its image-classification runs); `ks`: every value
    but the largest is a candidate xmin, and the one kept gives the fitted CDF closest to the tail's empirical CDF in
    Kolmogorov-Smirnov distance (its `goodness-of-fit`, WeightWatcher's fit). (nan, nan) for fewer than 2 values."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    if len(values) < 2:
        return math.nan, math.nan
    starts = [len(values) // 2] if xmin_rule == "median" else range(len(values) - 1)
    best = (math.inf, math.nan, math.nan)
    for start in starts:
        xmin = values[start]
        if start > 0 and xmin == values[start - 1] and xmin_rule == "ks":
            continue  # the same tail as the previous candidate
        tail = values[start:]
        log_sum = np.log(tail / xmin).sum()
        if log_sum <= 0:
            continue
        alpha = 1 + len(tail) / log_sum
        fitted_cdf = 1 - (tail / xmin) ** (1 - alpha)
        distance = np.max(np.abs(fitted_cdf - np.arange(len(tail)) / len(tail)))
        if distance < best[0]:
            best = (distance, alpha, xmin)
    return best[1], best[2]


def weight_matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each conv and linear layer's weight as a 2-D matrix (out, fan_in), by module name."""
    return {name: module.weight.reshape(module.weight.shape[0], -1) for name, module in model.named_modules()
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))}


@EVALUATIONS.register("farms")
class FARMS:
    name = FARMS_KEY

    def __init__(self, *, aspect_ratio: float, xmin: str, min_eigenvalues: int):
        self.aspect_ratio, self.xmin_rule, self.min_eigenvalues = float(aspect_ratio), xmin, min_eigenvalues

    def prepare(self, datamodule) -> None:
        """FARMS reads only the weights."""

    def layer_alphas(self, model: nn.Module) -> dict[str, float]:
        """alpha per layer, for the layers whose pooled ESD has at least `min_eigenvalues` nonzero eigenvalues."""
        alphas = {}
        for name, matrix in weight_matrices(model).items():
            esd = pooled_esd(matrix, self.aspect_ratio)
            if len(esd) < self.min_eigenvalues:
                continue
            alpha, _ = power_law_alpha(esd, self.xmin_rule)
            if math.isfinite(alpha):
                alphas[name] = alpha
        return alphas

    def evaluate(self, module, datamodule, prefix: str) -> dict[str, Any]:
        alphas = self.layer_alphas(module.eval_network())
        metrics = {f"{FARMS_KEY}.{name}.{prefix}_alpha": alpha for name, alpha in alphas.items()}
        if alphas:
            metrics[f"{FARMS_KEY}.{prefix}_alpha_mean"] = float(np.mean(list(alphas.values())))
        return metrics
