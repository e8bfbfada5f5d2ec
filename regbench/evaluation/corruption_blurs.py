"""CIFAR-10-C's defocus, glass, zoom and motion blurs (Hendrycks & Dietterich, ICLR 2019), batched in torch on
(N, C, H, W) images in [0, 1], reimplementing the math of github.com/hendrycks/robustness
ImageNet-C/create_c/make_cifar_c.py: OpenCV's disk filter, the local pixel shuffle, scipy's clipped zooms and
ImageMagick's MotionBlurImage kernel (MagickCore/effect.c)."""
from __future__ import annotations

import math

import torch

from regbench.evaluation.corruption_filters import clipped_zoom, filter2d, gaussian_filter


def defocus_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """The code's `disk`: the pixels of a 17 x 17 grid within `radius` of its centre (CIFAR's radii are at most 1.5,
    so the code's grid for radii up to 8), normalized, then anti-aliased by OpenCV's 3 x 3 Gaussian blur (weights
    exp(-x^2 / (2 sigma^2)) over x = -1, 0, 1, normalized; its border never reaches the disk)."""
    offsets = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) <= radius ** 2).double()
    disk = disk / disk.sum()
    taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / (2 * alias_sigma ** 2))
    taps = taps / taps.sum()
    return filter2d(disk.view(1, 1, 17, 17), taps.view(-1, 1) * taps.view(1, -1), "reflect101")[0, 0]


def defocus_blur(images: torch.Tensor, radius_alias: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Each channel filtered by the disk kernel, OpenCV's filter2D border (reflect about the edge pixel)."""
    return filter2d(images, defocus_kernel(*radius_alias), "reflect101").clamp(0, 1)


def shuffle_offsets(images: torch.Tensor, max_delta: int, iterations: int,
                    generator: torch.Generator) -> torch.Tensor:
    """The code's draws: for each iteration and visited pixel (rows then columns, descending from side - max_delta
    to max_delta + 1) and image, a (dx, dy) each uniform in -max_delta..max_delta - 1 (numpy's randint excludes
    its upper bound)."""
    h, w = images.shape[2:]
    visited = (iterations, max(h - 2 * max_delta, 0), max(w - 2 * max_delta, 0), images.shape[0], 2)
    return torch.randint(-max_delta, max_delta, visited, generator=generator)


def local_shuffle(images: torch.Tensor, offsets: torch.Tensor, max_delta: int) -> torch.Tensor:
    """The code's per-pixel loop, every image of the batch at once: each visited pixel (h, w), in the code's order,
    swaps contents with (h + dy, w + dx). The swaps chain (a pixel moved up-left can be moved again), so the visits
    stay sequential; they permute pixel indices, gathered once at the end."""
    n, c, h, w = images.shape
    batch = torch.arange(n)
    source = torch.arange(h * w).repeat(n, 1)  # source[i, p]: the original pixel now at p in image i
    rows, cols = range(h - max_delta, max_delta, -1), range(w - max_delta, max_delta, -1)
    for iteration in offsets:
        for row, row_offsets in zip(rows, iteration):
            for col, col_offsets in zip(cols, row_offsets):
                dx, dy = col_offsets.unbind(1)
                here = row * w + col
                there = (row + dy) * w + col + dx
                moved = source[batch, there]
                source[batch, there] = source[:, here]
                source[:, here] = moved
    flat = images.reshape(n, c, h * w)
    return flat.gather(2, source.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)


def glass_blur(images: torch.Tensor, sigma_delta_iterations: tuple[float, int, int],
               generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, truncated to 8 bits as the code's np.uint8 does, pixels locally shuffled, blurred again."""
    sigma, max_delta, iterations = sigma_delta_iterations
    blurred = torch.floor(gaussian_filter(images, sigma) * 255) / 255
    shuffled = local_shuffle(blurred, shuffle_offsets(images, max_delta, iterations, generator), max_delta)
    return gaussian_filter(shuffled, sigma).clamp(0, 1)


def zoom_blur(images: torch.Tensor, zooms: int, generator: torch.Generator) -> torch.Tensor:
    """The mean of the image and its clipped zooms by 1, 1.01, ..., 1 + 0.01 (zooms - 1), as the code's
    np.arange(1, end, 0.01) computes them: 1 + k ((1 + 0.01) - 1), whose rounding decides some crops' sizes."""
    step = (1 + 0.01) - 1
    total = images.clone()
    for k in range(zooms):
        total += clipped_zoom(images, 1 + k * step)
    return (total / (zooms + 1)).clamp(0, 1)


def motion_weights(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick's one-sided motion kernel: width 2 ceil(radius) + 1 taps (GetOptimalKernelWidth1D for a
    positive radius), tap i weighted exp(-i^2 / (2 sigma^2)), normalized."""
    taps = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    weights = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    return weights / weights.sum()


def motion_offsets(width: int, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each tap's (column, row) offset along `angles` (N, degrees): ImageMagick's ceil(i cos(angle) - 0.5) and
    ceil(i sin(angle) - 0.5), computed as its i (width cos) / hypot(width sin, width cos)."""
    radians = torch.deg2rad(angles.double()).view(-1, 1)
    along_x, along_y = width * torch.cos(radians), width * torch.sin(radians)
    length = torch.hypot(along_x, along_y)
    taps = torch.arange(width, dtype=torch.float64).view(1, -1)
    return torch.ceil(taps * along_x / length - 0.5).long(), torch.ceil(taps * along_y / length - 0.5).long()


def motion_blur_at(images: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """Each pixel the weighted sum of the pixels at its taps' offsets, ImageMagick's edge pixels repeated outside."""
    n, c, h, w = images.shape
    weights = motion_weights(radius, sigma).to(images.dtype)
    col_offsets, row_offsets = motion_offsets(len(weights), angles)
    batch = torch.arange(n).view(n, 1, 1)
    blurred = torch.zeros_like(images)
    for tap, weight in enumerate(weights):
        rows = (torch.arange(h).view(1, h) + row_offsets[:, tap:tap + 1]).clamp(0, h - 1)
        cols = (torch.arange(w).view(1, w) + col_offsets[:, tap:tap + 1]).clamp(0, w - 1)
        blurred += weight * images[batch, :, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    return blurred


def motion_blur(images: torch.Tensor, radius_sigma: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """ImageMagick's motion blur at an angle uniform in [-45, 45) degrees per image."""
    angles = torch.rand(images.shape[0], generator=generator, dtype=torch.float64) * 90 - 45
    return motion_blur_at(images, *radius_sigma, angles).clamp(0, 1)
