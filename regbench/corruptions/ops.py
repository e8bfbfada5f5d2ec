"""CIFAR-10-C's corruptions (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations", ICLR 2019), batched in torch on (N, C, H, W) float images in [0, 1]. The five severities'
parameters are the paper's code's (github.com/hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py); each op
reimplements that code's math for a whole batch: skimage's gaussian filter (scipy's, truncated at 4 sigma, edges
repeated), skimage's salt-and-pepper, HSV value and saturation changes and PIL's BOX resize here; the blurs, the
weather and the digital corruptions in the modules beside it."""
from __future__ import annotations

from typing import Callable

import torch

from regbench.corruptions.blurs import defocus_blur, glass_blur, motion_blur, zoom_blur
from regbench.corruptions.digital import elastic_transform, jpeg_compression
from regbench.corruptions.filters import gaussian_filter
from regbench.corruptions.weather import fog, snow
from regbench.specs.evaluation import CORRUPTIONS


def gaussian_noise(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return (images + std * noise).clamp(0, 1)


def shot_noise(images: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson counts of `photons` per unit intensity, scaled back."""
    return (torch.poisson(images * photons, generator=generator) / photons).clamp(0, 1)


def speckle_noise(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise proportional to the pixel: x + x * N(0, std)."""
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype, device=images.device)
    return (images + images * std * noise).clamp(0, 1)


def impulse_noise(images: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Each value (every channel apart) replaced with probability `amount`, by 1 or 0 with equal odds."""
    flipped = torch.rand(images.shape, generator=generator, device=images.device) <= amount
    salted = torch.rand(images.shape, generator=generator, device=images.device) <= 0.5
    return torch.where(flipped, salted.to(images.dtype), images)


def gaussian_blur(images: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """scipy's Gaussian filter over height and width (truncated at 4 sigma), the border pixels repeated."""
    return gaussian_filter(images, sigma).clamp(0, 1)


def contrast(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Each channel's deviations from its image mean scaled by `factor`."""
    means = images.mean(dim=(2, 3), keepdim=True)
    return ((images - means) * factor + means).clamp(0, 1)


def brightness(images: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    """HSV's value (the channel max) raised by `shift` and clipped, hue and saturation kept: every channel scales
    by new / old value; a black pixel (hue and saturation 0) becomes grey at the new value."""
    value = images.max(dim=1, keepdim=True).values
    new_value = (value + shift).clamp(0, 1)
    scaled = images * new_value / value.clamp_min(torch.finfo(images.dtype).tiny)
    return torch.where(value > 0, scaled, new_value.expand_as(images)).clamp(0, 1)


def saturate(images: torch.Tensor, scale_shift: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """HSV saturation S -> clip(S * scale + shift, 0, 1), hue and value kept, on RGB images: with value V, every
    channel x moves to V - (V - x) * S' / S; a grey pixel (S = 0, hue 0, i.e. red) becomes (V, V(1 - S'), V(1 - S'))."""
    scale, shift = scale_shift
    value = images.max(dim=1, keepdim=True).values
    saturation = (value - images.min(dim=1, keepdim=True).values) / value.clamp_min(torch.finfo(images.dtype).tiny)
    new_saturation = (saturation * scale + shift).clamp(0, 1)
    resaturated = value - (value - images) * new_saturation / saturation.clamp_min(torch.finfo(images.dtype).tiny)
    red_hue = torch.cat([value, value * (1 - new_saturation), value * (1 - new_saturation)], dim=1)
    return torch.where(saturation > 0, resaturated, red_hue).clamp(0, 1)


def box_resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """PIL's BOX resampling as a (size_out, size_in) matrix: output pixel i averages the input pixels whose
    centres fall in [centre - support, centre + support), centre = (i + 0.5) * scale, support = max(scale, 1) / 2."""
    scale = size_in / size_out
    filter_scale = max(scale, 1.0)
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
    positions = torch.arange(size_in, dtype=torch.float64) + 0.5
    offsets = (positions.view(1, -1) - centres.view(-1, 1)) / filter_scale
    weights = ((offsets >= -0.5) & (offsets < 0.5)).double()
    return weights / weights.sum(dim=1, keepdim=True)


def pixelate(images: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """BOX-resized to int(side * factor) and back (the code's PIL resizes, for any height and width)."""
    h, w = images.shape[2:]
    small_h, small_w = int(h * factor), int(w * factor)
    rows = box_resize_matrix(small_h, h).to(images) @ box_resize_matrix(h, small_h).to(images)
    cols = box_resize_matrix(small_w, w).to(images) @ box_resize_matrix(w, small_w).to(images)
    return torch.einsum("ij,ncjk,lk->ncil", rows, images, cols)


# name -> (op, its parameter at severities 1..5)
CORRUPTION_OPS: dict[str, tuple[Callable, tuple]] = {
    "gaussian_noise": (gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    "shot_noise": (shot_noise, (500, 250, 100, 75, 50)),
    "impulse_noise": (impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
    "gaussian_blur": (gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
    "contrast": (contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "brightness": (brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    "saturate": (saturate, ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2))),
    "pixelate": (pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
    "speckle_noise": (speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2)),
    "defocus_blur": (defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))),  # radius, alias
    # sigma, passes (the code's max_delta is 1 at every severity)
    "glass_blur": (glass_blur, ((0.05, 1), (0.25, 1), (0.4, 1), (0.25, 2), (0.4, 2))),
    "motion_blur": (motion_blur, ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))),  # radius, sigma
    "zoom_blur": (zoom_blur, (7, 12, 16, 21, 26)),  # zooms 1, 1.01, ...: np.arange(1, 1.06 .. 1.26, 0.01)'s lengths
    "snow": (snow, ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))),
    "fog": (fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))),  # strength, wibble decay
    # alpha, sigma, affine bound as fractions of the side: the code's multiples of IMSIZE = 32
    "elastic_transform": (elastic_transform, ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                                              (0.1, 0.03, 0.03))),
    "jpeg_compression": (jpeg_compression, (80, 65, 58, 50, 40)),  # PIL quality
}
if tuple(CORRUPTION_OPS) != CORRUPTIONS:
    raise RuntimeError(f"corruption ops {tuple(CORRUPTION_OPS)} do not match the declared {CORRUPTIONS}")


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """`images` (uint8 or float in [0, 1]) corrupted by `name` at `severity` (1..5), its randomness seeded by
    `seed` alone, so that the final and the best model see the same corrupted images."""
    pixels = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return apply_corruption(pixels, name, severity, torch.Generator().manual_seed(seed))


def apply_corruption(pixels: torch.Tensor, name: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Float `pixels` in [0, 1] corrupted by `name` at `severity`, drawing from `generator` (on their device)."""
    op, parameters = CORRUPTION_OPS[name]
    return op(pixels, parameters[severity - 1], generator)


