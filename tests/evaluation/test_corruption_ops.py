"""Each CIFAR-10-C corruption against a hand computation or a reference implementation (scipy's Gaussian filter,
PIL's BOX resize, colorsys's HSV) on tiny images, its noise statistics with a fixed seed, and every corruption's
distance from the clean images growing with its severity."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from regbench.corruptions.ops import CORRUPTION_OPS, box_resize_matrix, corrupt
from regbench.specs.evaluation import CORRUPTIONS


def test_contrast_scales_each_channels_deviations_from_its_mean():
    image = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]], [[1.0, 1.0], [0.0, 0.0]]]])
    out = corrupt(image, "contrast", 2, seed=0)  # factor 0.5
    assert torch.allclose(out[0, 0], torch.tensor([[0.35, 0.45], [0.55, 0.65]]))
    assert torch.allclose(out[0, 1], torch.tensor([[0.75, 0.75], [0.25, 0.25]]))


def test_brightness_raises_hsv_value_keeping_hue_and_saturation():
    grey = torch.tensor([[[[0.0, 0.5], [0.9, 1.0]]]])
    assert torch.allclose(corrupt(grey, "brightness", 5, seed=0), torch.tensor([[[[0.3, 0.8], [1.0, 1.0]]]]))
    # rgb (0.4, 0.2, 0.0): value 0.4 -> 0.5, saturation 1 and hue kept, so every channel scales by 0.5 / 0.4;
    # black (value 0) becomes grey at 0.1
    colour = torch.tensor([0.4, 0.2, 0.0, 0.0, 0.0, 0.0]).view(2, 3, 1, 1)
    out = corrupt(colour, "brightness", 2, seed=0)
    assert torch.allclose(out.flatten(), torch.tensor([0.5, 0.25, 0.0, 0.1, 0.1, 0.1]))


def test_saturate_scales_hsv_saturation_keeping_hue_and_value():
    # rgb (0.8, 0.4, 0.2): value 0.8, saturation 0.75; severity 1 makes it 0.225, so each channel's distance
    # below the value shrinks to 0.3 of itself; grey (saturation 0, hue 0: red) at severity 4 gets saturation 0.1
    colour = torch.tensor([0.8, 0.4, 0.2, 0.5, 0.5, 0.5]).view(2, 3, 1, 1)
    assert torch.allclose(corrupt(colour, "saturate", 1, seed=0).flatten(),
                          torch.tensor([0.8, 0.68, 0.62, 0.5, 0.5, 0.5]))
    assert torch.allclose(corrupt(colour, "saturate", 4, seed=0).flatten(),
                          torch.tensor([0.8, 0.8 - 0.4 / 0.75, 0.0, 0.5, 0.45, 0.45]))  # saturation 1.6 clipped to 1


@pytest.mark.parametrize("name", ["brightness", "saturate"])
def test_hsv_corruptions_match_a_round_trip_through_colorsys(name):
    pixels = torch.rand(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pixels[:4] = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.3, 0.3], [1.0, 0.5, 0.5], [0.2, 0.9, 0.9]])
    for severity, parameter in enumerate(CORRUPTION_OPS[name][1], start=1):
        expected = []
        for r, g, b in pixels.tolist():
            h, s, v = colorsys.rgb_to_hsv(r, g, b)
            if name == "brightness":
                v = min(max(v + parameter, 0.0), 1.0)
            else:
                s = min(max(s * parameter[0] + parameter[1], 0.0), 1.0)
            expected.append(colorsys.hsv_to_rgb(h, s, v))
        out = corrupt(pixels.view(40, 3, 1, 1), name, severity, seed=0).view(40, 3)
        assert torch.allclose(out.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6), severity


def test_gaussian_blur_is_scipys_filter_with_repeated_edges():
    image = torch.rand(2, 3, 8, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for severity, sigma in enumerate(CORRUPTION_OPS["gaussian_blur"][1], start=1):
        out = CORRUPTION_OPS["gaussian_blur"][0](image, sigma, None)
        expected = gaussian_filter(image.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
        assert np.allclose(out.numpy(), expected, atol=1e-12), severity


@pytest.mark.parametrize("size_in,size_out", [(8, 7), (8, 5), (7, 8), (5, 8), (32, 30), (30, 32), (6, 6)])
def test_box_resize_is_pils(size_in, size_out):
    image = np.random.default_rng(0).random((size_in, size_in), dtype=np.float32)
    expected = np.asarray(Image.fromarray(image, mode="F").resize((size_out, size_out), Image.BOX))
    matrix = box_resize_matrix(size_in, size_out)
    out = (matrix @ torch.from_numpy(image).double() @ matrix.T).numpy()
    assert np.allclose(out, expected, atol=1e-5)


def test_pixelate_is_two_pil_box_resizes():
    image = np.random.default_rng(1).random((8, 8), dtype=np.float32)
    small = Image.fromarray(image, mode="F").resize((6, 6), Image.BOX)  # severity 3: int(8 * 0.85) = 6
    expected = np.asarray(small.resize((8, 8), Image.BOX))
    out = corrupt(torch.from_numpy(image).view(1, 1, 8, 8), "pixelate", 3, seed=0)[0, 0].numpy()
    assert np.allclose(out, expected, atol=1e-5)


def test_gaussian_noise_has_the_severitys_std_and_is_seeded():
    image = torch.full((4, 1, 50, 50), 0.5)
    out = corrupt(image, "gaussian_noise", 3, seed=7)  # std 0.08, far from the clipping bounds
    assert abs((out - 0.5).std().item() - 0.08) < 0.002 and abs((out - 0.5).mean().item()) < 0.002
    assert torch.equal(out, corrupt(image, "gaussian_noise", 3, seed=7))
    assert not torch.equal(out, corrupt(image, "gaussian_noise", 3, seed=8))


def test_shot_noise_is_poisson_counts_scaled_back():
    image = torch.full((4, 1, 50, 50), 0.2)
    out = corrupt(image, "shot_noise", 5, seed=0)  # 50 photons: counts ~ Poisson(10), divided by 50
    counts = out * 50
    assert torch.allclose(counts, counts.round(), atol=1e-4)
    assert abs(counts.mean().item() - 10) < 0.1 and abs(counts.var().item() - 10) < 0.5


def test_impulse_noise_sets_the_severitys_fraction_to_zero_or_one_evenly():
    image = torch.full((4, 3, 50, 50), 0.5)
    out = corrupt(image, "impulse_noise", 5, seed=0)  # amount 0.07
    salt, pepper = (out == 1).double().mean().item(), (out == 0).double().mean().item()
    assert abs(salt + pepper - 0.07) < 0.005 and abs(salt - pepper) < 0.005
    assert torch.all((out == 0) | (out == 1) | (out == 0.5))


def test_speckle_noise_is_gaussian_noise_proportional_to_the_pixel():
    image = torch.cat([torch.full((4, 1, 50, 50), 0.25), torch.full((4, 1, 50, 50), 0.5)], dim=1)
    out = corrupt(image, "speckle_noise", 5, seed=0)  # x + x N(0, 0.2): std 0.05 and 0.1, far from the bounds
    for channel, value in ((0, 0.25), (1, 0.5)):
        deviations = out[:, channel] - value
        assert abs(deviations.std().item() - 0.2 * value) < 0.003 and abs(deviations.mean().item()) < 0.003
    assert torch.equal(corrupt(torch.zeros(1, 1, 4, 4), "speckle_noise", 5, seed=0), torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (2, 3, 12, 10)])
def test_every_corruption_is_seeded_and_keeps_shape_dtype_and_range(name, shape):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    if name == "saturate" and shape[1] != 3:
        return
    for severity in range(1, 6):
        out = corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert bool(((out >= 0) & (out <= 1)).all()), severity
        assert torch.equal(out, corrupt(images, name, severity, seed=3)), severity


def test_uint8_images_are_taken_as_pixels_over_255():
    image = torch.tensor([[[[0, 255], [51, 102]]]], dtype=torch.uint8)
    assert torch.allclose(corrupt(image, "contrast", 1, seed=0), corrupt(image.float() / 255, "contrast", 1, seed=0))


# CIFAR-10-C's severities not ordered by strength: saturate's (1 and 2 desaturate, 3 to 5 saturate), glass blur's
# (blur sigma and shuffle iterations trade off: (0.4, 1 pass) then (0.25, 2 passes)) and elastic transform's (the
# affine shift shrinks from 8% to 3% of the side while the smooth displacement grows).
UNORDERED = ("saturate", "glass_blur", "elastic_transform")


@pytest.mark.parametrize("name", [name for name in CORRUPTIONS if name not in UNORDERED])
def test_distance_from_the_clean_images_grows_with_severity(name):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(16, 3, 1, 1, generator=gen) * 0.6 + 0.2
              + 0.2 * torch.rand(16, 3, 32, 32, generator=gen)).clamp(0, 1)  # CIFAR's side, which snow's zooms need
    distances = [(corrupt(images, name, severity, seed=0) - images).abs().mean().item() for severity in range(1, 6)]
    if name == "motion_blur":  # severities 3 and 4 (radius 6 and 8, sigma 2) differ only in taps 13 to 16, < 1e-9
        assert distances.pop(3) == pytest.approx(distances[2], abs=1e-6)
    assert all(a < b for a, b in zip(distances, distances[1:])), distances
