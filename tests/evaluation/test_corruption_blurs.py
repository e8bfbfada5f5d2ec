"""CIFAR-10-C's defocus, glass, zoom and motion blurs against hand computations and references: the disk kernel by
hand, its filtering against scipy's correlate with OpenCV's border, the pixel shuffle against the paper's per-pixel
loop, zoom blur against scipy's zooms, the motion kernel by hand and against ImageMagick when it is installed."""
from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate
from test_corruption_filters import scipy_clipped_zoom

from regbench.corruptions.blurs import (defocus_kernel, glass_blur, local_shuffle, motion_blur_at,
                                                  motion_offsets, motion_weights, shuffle_offsets)
from regbench.corruptions.ops import CORRUPTION_OPS, corrupt


def three_taps(sigma: float) -> np.ndarray:
    edge = math.exp(-1 / (2 * sigma ** 2))
    return np.array([edge, 1.0, edge]) / (1 + 2 * edge)


def test_defocus_kernel_of_a_one_pixel_disk_is_the_anti_aliasing_gaussian():
    kernel = defocus_kernel(0.3, 0.4).numpy()  # severity 1: only the centre is within 0.3
    expected = np.zeros((17, 17))
    expected[7:10, 7:10] = np.outer(three_taps(0.4), three_taps(0.4))
    assert np.allclose(kernel, expected, atol=1e-15)


def test_defocus_kernel_of_a_radius_one_disk_spreads_five_pixels():
    kernel = defocus_kernel(1.0, 0.2).numpy()  # severity 4: the centre and its 4 neighbours, 0.2 each
    edge, middle = three_taps(0.2)[0], three_taps(0.2)[1]
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel[8, 8] == pytest.approx(0.2 * (middle ** 2 + 4 * edge * middle))
    # (8, 9) sees the disk's own pixel there, the centre beside it and the two pixels diagonal to it
    assert kernel[8, 9] == pytest.approx(0.2 * (middle ** 2 + edge * middle + 2 * edge ** 2))


def test_defocus_blur_filters_with_opencvs_border():
    image = np.random.default_rng(0).random((2, 1, 5, 6))
    for severity, parameters in enumerate(CORRUPTION_OPS["defocus_blur"][1], start=1):
        kernel = defocus_kernel(*parameters).numpy()
        expected = np.clip(correlate(image, kernel[None, None], mode="mirror"), 0, 1)  # mirror: dcb|abcd
        assert np.allclose(corrupt(torch.from_numpy(image), "defocus_blur", severity, 0).numpy(), expected,
                           atol=1e-6), severity


def paper_loop(image: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The paper's loop on one (H, W, C) numpy image, its (dx, dy) draws given per pass as (2, H - 2, W - 2)."""
    image = image.copy()
    h, w = image.shape[:2]
    for dx_dy in offsets:
        for row in range(h - 1, 1, -1):
            for col in range(w - 1, 1, -1):
                dx, dy = dx_dy[:, row - 2, col - 2]
                image[row, col], image[row + dy, col + dx] = image[row + dy, col + dx], image[row, col]
    return image


@pytest.mark.parametrize("passes", [1, 2])
def test_local_shuffle_is_the_papers_loop_on_numpy_pixels(passes):
    images = torch.arange(3 * 2 * 7 * 6, dtype=torch.float64).view(3, 2, 7, 6)
    offsets = shuffle_offsets(images, passes, torch.Generator().manual_seed(0))
    assert offsets.shape == (passes, 3, 2, 5, 4) and set(offsets.unique().tolist()) == {-1, 0}
    out = local_shuffle(images, offsets)
    for index in range(3):
        expected = paper_loop(images[index].permute(1, 2, 0).numpy(), offsets[:, index].numpy())
        assert np.array_equal(out[index].permute(1, 2, 0).numpy(), expected)


def test_the_papers_swap_of_numpy_pixels_is_a_copy():
    image = np.arange(12).reshape(2, 2, 3)
    image[1, 1], image[0, 0] = image[0, 0], image[1, 1]
    assert image[1, 1].tolist() == [0, 1, 2] and image[0, 0].tolist() == [0, 1, 2]


def test_glass_blur_with_a_negligible_sigma_is_the_8_bit_image_shuffled():
    images = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = glass_blur(images, (0.05, 1), torch.Generator().manual_seed(3))  # severity 1: one-tap Gaussian
    offsets = shuffle_offsets(images, 1, torch.Generator().manual_seed(3))
    assert torch.equal(out, local_shuffle(torch.floor(images * 255) / 255, offsets))


def test_zoom_blur_is_the_mean_of_the_image_and_its_scipy_zooms():
    image = np.random.default_rng(1).random((12, 12))
    for severity, end in enumerate((1.06, 1.11, 1.16, 1.21, 1.26), start=1):
        zooms = [scipy_clipped_zoom(image, factor) for factor in np.arange(1, end, 0.01)]
        assert len(zooms) == CORRUPTION_OPS["zoom_blur"][1][severity - 1]
        expected = np.clip((image + sum(zooms)) / (len(zooms) + 1), 0, 1)
        out = corrupt(torch.from_numpy(image).view(1, 1, 12, 12), "zoom_blur", severity, 0)[0, 0].numpy()
        assert np.allclose(out, expected, atol=1e-6), severity


def test_motion_kernel_is_imagemagicks_one_sided_gaussian():
    weights = motion_weights(6, 2).numpy()  # severity 3: 2 ceil(6) + 1 taps, exp(-i^2 / 8)
    expected = np.exp(-np.arange(13) ** 2 / 8.0)
    assert weights.shape == (13,) and weights.sum() == pytest.approx(1.0)
    assert np.allclose(weights, expected / expected.sum())
    cols, rows = motion_offsets(13, torch.tensor([0.0, 90.0, -45.0]))
    assert cols[0].tolist() == list(range(13)) and rows[0].tolist() == [0] * 13
    assert cols[1].tolist() == [0] * 13 and rows[1].tolist() == list(range(13))
    diagonal = [math.ceil(i * math.sqrt(0.5) - 0.5) for i in range(13)]
    assert cols[2].tolist() == diagonal and rows[2].tolist() == [-step for step in diagonal]


def test_motion_blur_of_a_vertical_edge_at_angle_zero_reads_the_pixels_to_the_right():
    image = torch.zeros(1, 1, 3, 20, dtype=torch.float64)
    image[..., 10:] = 1.0
    out = motion_blur_at(image, 6, 1, torch.tensor([0.0]))[0, 0, 0]
    weights = motion_weights(6, 1)
    for col in range(20):
        assert out[col].item() == pytest.approx(sum(w.item() for i, w in enumerate(weights) if col + i >= 10))


def imagemagick() -> str | None:
    """An ImageMagick 6 or 7 command (some machines hold a stand-in `convert` that is not ImageMagick)."""
    for command in ("magick", "convert-im6.q16", "convert"):
        path = shutil.which(command)
        version = subprocess.run([path, "-version"], capture_output=True, text=True).stdout if path else ""
        if version.startswith("Version: ImageMagick"):
            return path
    return None


@pytest.mark.skipif(imagemagick() is None, reason="ImageMagick is not installed")
@pytest.mark.parametrize("radius,sigma,angle", [(6, 1, 0), (6, 2, 30), (8, 2, -45), (9, 2.5, -20), (14, 12, -100)])
def test_motion_blur_matches_imagemagick_up_to_its_8_bit_output(tmp_path, radius, sigma, angle):
    picture = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    picture[0], picture[:, -1] = 255, 0  # edges, where ImageMagick repeats the border pixels
    Image.fromarray(picture).save(tmp_path / "in.png")
    subprocess.run([imagemagick(), str(tmp_path / "in.png"), "-motion-blur", f"{radius}x{sigma}{angle:+}",
                    str(tmp_path / "out.png")], check=True)
    expected = np.asarray(Image.open(tmp_path / "out.png").convert("RGB")).astype(np.float64)
    image = torch.from_numpy(picture).permute(2, 0, 1)[None].double() / 255
    out = motion_blur_at(image, radius, sigma, torch.tensor([float(angle)]))[0].permute(1, 2, 0).numpy() * 255
    # regbench keeps the float result; ImageMagick writes 8 bits
    assert np.abs(out - expected).max() < 1.0
