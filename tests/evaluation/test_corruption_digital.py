"""CIFAR-10-C's JPEG compression against PIL at the paper's qualities on hand images, and its elastic transform
against scipy (affine_transform with OpenCV's border, gaussian_filter, map_coordinates) fed the same draws, its
affine map through the three points and its displacements bounded by alpha on a ramp."""
from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import affine_transform, gaussian_filter, map_coordinates

from regbench.corruptions.digital import affine_through, elastic_warp
from regbench.corruptions.ops import CORRUPTION_OPS, corrupt


def pil_jpeg(picture: np.ndarray, quality: int) -> np.ndarray:
    encoded = BytesIO()
    Image.fromarray(picture).save(encoded, "JPEG", quality=quality)
    return np.array(Image.open(encoded))


def hand_picture(channels: int) -> np.ndarray:
    """A 16 x 16 picture with a gradient, a bright square and a dark stripe, so that JPEG has edges to smear."""
    rows, cols = np.mgrid[0:16, 0:16]
    grey = (rows * 12 + cols * 3).astype(np.uint8)
    grey[4:9, 5:12] = 250
    grey[:, 13] = 10
    return grey if channels == 1 else np.stack([grey, 255 - grey, np.roll(grey, 5, axis=1)], axis=-1)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_compression_is_pils_round_trip_at_the_papers_qualities(channels):
    picture = hand_picture(channels)
    image = torch.from_numpy(picture).view(16, 16, channels).permute(2, 0, 1)[None]
    distances = []
    for severity, quality in enumerate((80, 65, 58, 50, 40), start=1):
        assert CORRUPTION_OPS["jpeg_compression"][1][severity - 1] == quality
        out = corrupt(image, "jpeg_compression", severity, seed=0)  # uint8 in: pixels / 255
        expected = pil_jpeg(picture, quality).reshape(16, 16, channels)
        assert torch.equal(torch.round(out[0] * 255).to(torch.uint8).permute(1, 2, 0), torch.from_numpy(expected))
        distances.append(np.abs(expected.astype(float) - picture.reshape(16, 16, channels)).mean())
    assert distances[0] > 0 and distances[-1] > distances[0]


def test_jpeg_compression_codes_each_channel_of_a_two_channel_image_as_grey():
    picture = hand_picture(1)
    image = torch.from_numpy(np.stack([picture, 255 - picture]))[None]
    out = torch.round(corrupt(image, "jpeg_compression", 5, seed=0)[0] * 255).to(torch.uint8).numpy()
    assert np.array_equal(out[0], pil_jpeg(picture, 40)) and np.array_equal(out[1], pil_jpeg(255 - picture, 40))


def test_affine_through_maps_the_three_points():
    source = torch.tensor([[[21.0, 21.0], [21.0, 11.0], [11.0, 11.0]]], dtype=torch.float64)
    target = source + torch.tensor([[[1.5, -2.0], [0.5, 0.25], [-1.0, 2.0]]], dtype=torch.float64)
    affine = affine_through(source, target)[0]
    mapped = source[0] @ affine[:, :2].T + affine[:, 2]
    assert torch.allclose(mapped, target[0], atol=1e-12)


def scipy_elastic(image: np.ndarray, corner_shifts: np.ndarray, noise: np.ndarray, alpha: float,
                  sigma: float) -> np.ndarray:
    """The paper's code's steps on one (H, W) channel with scipy: OpenCV's warpAffine is scipy's affine_transform
    (order 1) with the inverse map in (row, col) order and the mirror (dcb|abcd) border."""
    h, w = image.shape
    third = min(h, w) // 3
    source = np.array([w // 2, h // 2]) + third * np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    homogeneous = np.concatenate([source + corner_shifts, np.ones((3, 1))], axis=1)
    inverse = np.linalg.solve(homogeneous, source).T  # (x, y) of the source for each target (x, y)
    (a, b, c), (d, e, f) = inverse
    warped = affine_transform(image, np.array([[e, d], [b, a]]), offset=(f, c), order=1, mode="mirror")
    dx = gaussian_filter(noise[0], sigma, mode="reflect", truncate=3) * alpha
    dy = gaussian_filter(noise[1], sigma, mode="reflect", truncate=3) * alpha
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.clip(map_coordinates(warped, [rows + dy, cols + dx], order=1, mode="reflect"), 0, 1)


@pytest.mark.parametrize("side", [8, 32])
def test_elastic_transform_is_the_papers_warps_in_scipy(side):
    rng = np.random.default_rng(side)
    image = rng.random((2, 1, side, side))
    for severity, fractions in enumerate(CORRUPTION_OPS["elastic_transform"][1], start=1):
        alpha, sigma, bound = (fraction * side for fraction in fractions)
        corner_shifts = rng.uniform(-bound, bound, (2, 3, 2))
        noise = rng.uniform(-1, 1, (2, 2, side, side))
        out = elastic_warp(torch.from_numpy(image), torch.from_numpy(corner_shifts), torch.from_numpy(noise), alpha,
                           sigma).numpy()
        for index in range(2):
            expected = scipy_elastic(image[index, 0], corner_shifts[index], noise[index], alpha, sigma)
            assert np.allclose(out[index, 0], expected, atol=1e-9), severity


def test_elastic_displacements_are_the_smoothed_noise_times_alpha_at_most_alpha():
    cols = torch.arange(32, dtype=torch.float64)
    ramp = (0.25 + cols / 62).expand(1, 1, 32, 32)  # each column's value tells where it was read
    noise = torch.rand(1, 2, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    alpha, sigma = 32 * 0.1, 32 * 0.03  # severity 5
    out = elastic_warp(ramp, torch.zeros(1, 3, 2, dtype=torch.float64), noise, alpha, sigma)  # no affine shift
    read_cols = (out[0, 0] - 0.25) * 62
    shifts = read_cols - cols
    expected = torch.from_numpy(gaussian_filter(noise[0, 0].numpy(), sigma, mode="reflect", truncate=3)) * alpha
    inside = (cols + expected >= 0) & (cols + expected <= 31)  # read inside the image, not reflected
    assert torch.allclose(shifts[inside], expected[inside], atol=1e-9)
    assert shifts.abs().max() <= alpha and shifts.abs().max() > alpha / 10
