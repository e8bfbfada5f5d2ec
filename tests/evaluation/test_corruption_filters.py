"""The filters the CIFAR-10-C corruptions share against the libraries the paper's code calls: numpy's border
extensions, scipy's Gaussian filter, zoom and map_coordinates, on tiny images and paddings wider than the image."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter as scipy_gaussian_filter
from scipy.ndimage import map_coordinates, zoom

from regbench.corruptions.filters import (clipped_zoom, clipped_zoom_matrix, fold_indices, gaussian_filter,
                                                    sample_bilinear)


@pytest.mark.parametrize("mode,numpy_mode", [("nearest", "edge"), ("reflect", "symmetric"), ("reflect101", "reflect")])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_folded_indices_are_numpys_border_extensions(mode, numpy_mode, size):
    if size == 1 and numpy_mode == "reflect":
        numpy_mode = "edge"  # numpy's reflect of one value repeats it, as OpenCV's does
    expected = np.pad(np.arange(size), 11, mode=numpy_mode)
    assert fold_indices(torch.arange(-11, size + 11), size, mode).tolist() == expected.tolist()


@pytest.mark.parametrize("mode", ["nearest", "reflect"])
@pytest.mark.parametrize("sigma,truncate", [(0.4, 4.0), (1.0, 4.0), (2.3, 3.0), (6.4, 3.0)])
def test_gaussian_filter_is_scipys(mode, sigma, truncate):
    image = np.random.default_rng(0).random((2, 3, 7, 9))
    expected = scipy_gaussian_filter(image, sigma=(0, 0, sigma, sigma), mode=mode, truncate=truncate)
    assert np.allclose(gaussian_filter(torch.from_numpy(image), sigma, mode, truncate).numpy(), expected, atol=1e-12)


def test_gaussian_filter_with_sigma_zero_is_the_identity_as_scipys():
    image = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    assert torch.equal(gaussian_filter(image, 0.0, "reflect", 3.0), image)


def scipy_clipped_zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """The paper's code's clipped_zoom of a square (H, H) image: central crop, scipy's linear zoom, central trim."""
    side = image.shape[0]
    cropped = math.ceil(side / factor)
    top = (side - cropped) // 2
    zoomed = zoom(image[top:top + cropped, top:top + cropped], factor, order=1)
    trim = (zoomed.shape[0] - side) // 2
    return zoomed[trim:trim + side, trim:trim + side]


@pytest.mark.parametrize("side", [8, 28, 32])
@pytest.mark.parametrize("factor", [1.0, 1.06, 1.13, 1.25, 1.75, 2.25])
def test_clipped_zoom_is_the_codes_scipy_zoom(side, factor):
    image = np.random.default_rng(1).random((side, side))
    out = clipped_zoom(torch.from_numpy(image).view(1, 1, side, side), factor)[0, 0].numpy()
    assert np.allclose(out, scipy_clipped_zoom(image, factor), atol=1e-12)


def test_clipped_zoom_rows_are_interpolation_weights():
    matrix = clipped_zoom_matrix(8, 1.75)
    assert torch.allclose(matrix.sum(1), torch.ones(8, dtype=torch.float64)) and bool((matrix >= 0).all())


@pytest.mark.parametrize("mode,scipy_mode", [("nearest", "nearest"), ("reflect", "reflect"), ("reflect101", "mirror")])
def test_bilinear_sampling_is_scipys_map_coordinates(mode, scipy_mode):
    rng = np.random.default_rng(2)
    image = rng.random((5, 6))
    rows, cols = rng.uniform(-4, 9, (5, 6)), rng.uniform(-4, 10, (5, 6))
    expected = map_coordinates(image, [rows, cols], order=1, mode=scipy_mode)
    out = sample_bilinear(torch.from_numpy(image).view(1, 1, 5, 6), torch.from_numpy(rows)[None],
                          torch.from_numpy(cols)[None], mode)[0, 0].numpy()
    assert np.allclose(out, expected, atol=1e-12)
