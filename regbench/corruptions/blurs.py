"""CIFAR-10-C's defocus, glass, zoom and motion blurs (Hendrycks & Dietterich, ICLR 2019), batched in torch on
(N, C, H, W) images in [0, 1], reimplementing the math of github.com/hendrycks/robustness
ImageNet-C/create_c/make_cifar_c.py: OpenCV's disk filter, the local pixel shuffle, scipy's clipped zooms and
ImageMagick's MotionBlurImage kernel (MagickCore/effect.c)."""
from __future__ import annotations

import math

import torch

from regbench.corruptions.filters import clipped_zoom, filter2d, gaussian_filter


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


def shuffle_offsets(images: torch.Tensor, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """The code's draws: per pass, image and visited pixel (rows and columns 2 to side - 1), a (dx, dy) each -1 or 0
    (numpy's randint(-max_delta, max_delta) with max_delta 1, as at every CIFAR severity)."""
    n, _, h, w = images.shape
    return torch.randint(-1, 1, (iterations, n, 2, max(h - 2, 0), max(w - 2, 0)), generator=generator)


def local_shuffle(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The code's per-pixel loop: each visited pixel (h, w), rows then columns descending, gets the value of pixel
    (h + dy, w + dx). The code means a swap, but its tuple assignment of numpy views of (H, W, 3) pixels copies
    (the second assignment reads the pixel just overwritten), and that copy made CIFAR-10-C. A pass only reads
    pixels above or left of the one it writes, which it has not written yet, so a whole pass is one gather."""
    n, c, h, w = images.shape
    batch = torch.arange(n).view(n, 1, 1)
    rows, cols = torch.arange(2, h).view(1, -1, 1), torch.arange(2, w).view(1, 1, -1)
    for dx_dy in offsets:
        read = images[batch, :, rows + dx_dy[:, 1], cols + dx_dy[:, 0]].permute(0, 3, 1, 2)
        images = images.clone()
        images[:, :, 2:, 2:] = read
    return images


def glass_blur(images: torch.Tensor, sigma_iterations: tuple[float, int], generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, truncated to 8 bits as the code's np.uint8 does, pixels locally shuffled, blurred again."""
    sigma, iterations = sigma_iterations
    blurred = torch.floor(gaussian_filter(images, sigma) * 255) / 255
    return gaussian_filter(local_shuffle(blurred, shuffle_offsets(images, iterations, generator)), sigma).clamp(0, 1)


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
