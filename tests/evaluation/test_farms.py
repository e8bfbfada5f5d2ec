"""FARMS by hand: the covering windows, the fixed-aspect-ratio submatrices, their pooled spectrum, the power-law
alpha on samples of known power laws, and the per-layer metrics."""
from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.evaluation import build_evaluations
from regbench.evaluation.farms import (FARMS, pooled_esd, power_law_alpha, submatrices, submatrix_shape,
                                       weight_matrices, windows)


def test_windows_cover_the_length_with_the_fewest_evenly_spread_starts():
    assert windows(8, 4) == [0, 4]
    assert windows(9, 8) == [0, 1]
    assert windows(512, 100) == [0, 82, 165, 247, 330, 412]
    assert windows(5, 5) == [0]


def test_submatrices_have_the_fixed_aspect_ratio():
    assert submatrix_shape(512, 100, 1.0) == (100, 100)
    assert submatrix_shape(512, 100, 2.0) == (200, 100)
    assert submatrix_shape(6, 3, 4.0) == (4, 1)
    wide = torch.arange(18.0).reshape(3, 6)  # transposed to 6 x 3 first
    square = submatrices(wide, 1.0)
    assert [block.tolist() for block in square] == [wide.T[:3].tolist(), wide.T[3:].tolist()]
    assert [block.shape for block in submatrices(wide, 2.0)] == [(6, 3)]


def test_pooled_esd_concatenates_the_submatrices_eigenvalues():
    # 4 x 2, square 2 x 2 blocks diag(1, 2) and diag(3, 4): eigenvalues of X^T X 1, 4 and 9, 16
    matrix = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0]])
    assert pooled_esd(matrix, 1.0).tolist() == pytest.approx([1.0, 4.0, 9.0, 16.0])
    # a rank-one block adds a numerical zero, left out
    assert pooled_esd(torch.ones(2, 2), 1.0).tolist() == pytest.approx([4.0])


def pareto(alpha: float, xmin: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Samples of p(x) ~ x^-alpha on [xmin, inf) by the inverse CDF."""
    return xmin * (1 - rng.random(n)) ** (-1 / (alpha - 1))


def test_power_law_alpha_by_hand():
    # median rule: 4 values, xmin the third (index 4 // 2): tail {e, e^2}, alpha = 1 + 2 / (ln 1 + ln e) = 3
    alpha, xmin = power_law_alpha(np.array([1.0, 2.0, math.e, math.e ** 2]), "median")
    assert (alpha, xmin) == (pytest.approx(3.0), math.e)
    # ks rule on two values: the only candidate xmin is the smaller, tail {1, e}: alpha 1 + 2 / 1 = 3
    alpha, xmin = power_law_alpha(np.array([math.e, 1.0]), "ks")
    assert (alpha, xmin) == (pytest.approx(3.0), 1.0)
    assert all(math.isnan(v) for v in power_law_alpha(np.array([1.0]), "ks"))


@pytest.mark.parametrize("alpha", [2.0, 2.5, 4.0])
def test_power_law_alpha_recovers_known_power_laws(alpha):
    rng = np.random.default_rng(0)
    tail = pareto(alpha, 2.0, 5000, rng)
    for rule in ("median", "ks"):
        assert power_law_alpha(tail, rule)[0] == pytest.approx(alpha, abs=0.12)
    # below a body of smaller values, the KS choice of xmin finds the tail again
    fitted, xmin = power_law_alpha(np.r_[tail, rng.random(3000) * 2.0], "ks")
    assert fitted == pytest.approx(alpha, abs=0.15) and 1.5 < xmin < 3.0


def test_farms_alpha_per_layer_and_mean():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 2))
    matrices = weight_matrices(model)
    assert {name: tuple(m.shape) for name, m in matrices.items()} == {"0": (4, 18), "2": (10, 64), "4": (2, 10)}
    farms = FARMS(aspect_ratio=1.0, xmin="median", min_eigenvalues=5)
    alphas = farms.layer_alphas(model)
    # the last layer's 2 x 2 blocks give 5 windows x 2 = 10 eigenvalues; every layer has at least 5
    assert set(alphas) == {"0", "2", "4"} and all(a > 1 for a in alphas.values())
    assert alphas["4"] == power_law_alpha(pooled_esd(matrices["4"], 1.0), "median")[0]
    # 11 eigenvalues at least: the last layer is left out
    assert set(FARMS(aspect_ratio=1.0, xmin="ks", min_eigenvalues=11).layer_alphas(model)) == {"0", "2"}
    metrics = farms.evaluate(SimpleNamespace(eval_network=lambda: model), None, "test")
    assert metrics["farms.test_alpha_mean"] == pytest.approx(np.mean(list(alphas.values())))
    assert metrics["farms.2.test_alpha"] == alphas["2"]


@pytest.mark.parametrize("params,message", [
    ({"aspect_ratio": 0.5, "xmin": "ks", "min_eigenvalues": 5}, "eval.farms.aspect_ratio=0.5 is invalid: must be a "
                                                                "number >= 1"),
    ({"aspect_ratio": 1.0, "xmin": "peak", "min_eigenvalues": 5}, "eval.farms.xmin='peak' is invalid: allowed: median, "
                                                                  "ks"),
    ({"aspect_ratio": 1.0, "xmin": "ks", "min_eigenvalues": 1}, "eval.farms.min_eigenvalues=1 is invalid: must be an "
                                                                "integer >= 2"),
])
def test_bad_farms_values_are_one_line_errors(params, message):
    with pytest.raises(UserError, match="^" + re.escape(message)):
        build_evaluations({"farms": params}, {"name": "digits"}, 0, "convnet")
