"""CIFAR-10-C's snow and fog: the plasma fractal against a per-image numpy port of the paper's diamond-square fed
the same uniform draws, fog's formula, snow's whitening by hand and its layer rebuilt from its parts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_corruption_filters import scipy_clipped_zoom

from regbench.corruptions.blurs import motion_blur_at
from regbench.corruptions.ops import CORRUPTION_OPS, corrupt
from regbench.corruptions.weather import plasma_fractal, snow


def paper_plasma(size: int, decay: float, uniform) -> np.ndarray:
    """The paper's diamond-square on one map with numpy rolls, its uniform(low, high, shape) draws from `uniform`."""
    heights = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = heights[0::step, 0::step]
        sums = corners + np.roll(corners, -1, axis=0)
        sums = sums + np.roll(sums, -1, axis=1)
        heights[half::step, half::step] = sums / 4 + wibble * uniform(-wibble, wibble, sums.shape)
        centres, corners = heights[half::step, half::step], heights[0::step, 0::step]
        sums = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        heights[0::step, half::step] = sums / 4 + wibble * uniform(-wibble, wibble, sums.shape)
        sums = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        heights[half::step, 0::step] = sums / 4 + wibble * uniform(-wibble, wibble, sums.shape)
        step //= 2
        wibble /= decay
    heights -= heights.min()
    return heights / heights.max()


@pytest.mark.parametrize("size,decay", [(2, 3.0), (8, 2.5), (32, 1.75)])
def test_plasma_fractal_is_the_papers_diamond_square(size, decay):
    draws = torch.Generator().manual_seed(5)

    def uniform(low, high, shape):
        return (torch.rand(shape, generator=draws, dtype=torch.float64) * (high - low) + low).numpy()

    expected = paper_plasma(size, decay, uniform)
    out = plasma_fractal(1, size, decay, torch.Generator().manual_seed(5))[0].numpy()
    assert np.allclose(out, expected, atol=1e-12)
    assert out.min() == 0 and out.max() == 1


def test_fog_adds_the_fractal_and_rescales_by_the_images_maximum():
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.8
    for severity, (strength, decay) in enumerate(CORRUPTION_OPS["fog"][1], start=1):
        layer = plasma_fractal(3, 8, decay, torch.Generator().manual_seed(4)).unsqueeze(1)
        peak = images.amax(dim=(1, 2, 3), keepdim=True)
        expected = ((images + strength * layer) * peak / (peak + strength)).clamp(0, 1)
        assert torch.allclose(corrupt(images, "fog", severity, 4).double(), expected, atol=1e-6), severity


def test_fog_on_other_sizes_crops_the_next_power_of_twos_map():
    images = torch.full((2, 1, 28, 20), 0.5)  # a 32 x 32 map, its top-left 28 x 20
    layer = plasma_fractal(2, 32, 3.0, torch.Generator().manual_seed(1))[:, :28, :20].unsqueeze(1)
    assert torch.allclose(corrupt(images, "fog", 1, 1), ((0.5 + 0.2 * layer) * 0.5 / 0.7).float())


def test_snow_without_a_layer_moves_the_image_towards_bright_grey():
    pixel = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    # a threshold above every value leaves no snow; grey 0.299 0.2 + 0.587 0.4 + 0.114 0.6 = 0.363
    out = snow(pixel, (0.3, 0.3, 1.25, 2.0, 14, 12, 0.8), torch.Generator().manual_seed(0))
    expected = 0.8 * torch.tensor([0.2, 0.4, 0.6]) + 0.2 * (1.5 * 0.363 + 0.5)
    assert torch.allclose(out[0, :, 0, 0].float(), expected)
    grey = torch.full((1, 1, 4, 4), 0.6, dtype=torch.float64)  # a grey image is its own grey: max(0.6, 1.4)
    out = snow(grey, (0.3, 0.3, 1.25, 2.0, 14, 12, 0.8), torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.full_like(grey, 0.8 * 0.6 + 0.2 * 1.4))


def test_snow_layer_is_zoomed_thresholded_8_bit_motion_blurred_noise_added_twice():
    images = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    for severity, parameters in enumerate(CORRUPTION_OPS["snow"][1], start=1):
        mean, std, zoom, threshold, radius, sigma, keep = parameters
        draws = torch.Generator().manual_seed(9)
        noise = (torch.randn((2, 1, 16, 16), generator=draws, dtype=torch.float64) * std + mean).numpy()
        layer = np.stack([scipy_clipped_zoom(picture[0], zoom) for picture in noise])[:, None]
        layer = np.floor(np.clip(np.where(layer < threshold, 0, layer), 0, 1) * 255) / 255
        angles = torch.rand(2, generator=draws, dtype=torch.float64) * 90 - 135
        layer = motion_blur_at(torch.from_numpy(layer), radius, sigma, angles)
        expected = ((1 - keep) * 0.5 + layer + layer.flip(2, 3)).clamp(0, 1)  # black whitened to (1 - keep) 0.5
        assert torch.allclose(corrupt(images, "snow", severity, 9).double(), expected, atol=1e-6), severity
