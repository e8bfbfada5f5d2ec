"""CIFAR-10-C's snow and fog (Hendrycks & Dietterich, ICLR 2019), batched in torch on (N, C, H, W) images in
[0, 1], reimplementing the math of github.com/hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py: a
thresholded, zoomed and motion-blurred Gaussian snow layer, and a diamond-square plasma fractal fog."""
from __future__ import annotations

import torch

from regbench.corruptions.blurs import motion_blur_at
from regbench.corruptions.filters import clipped_zoom

# OpenCV's RGB -> grey weights (cv2.COLOR_RGB2GRAY)
LUMA = (0.299, 0.587, 0.114)


def snow(images: torch.Tensor, parameters: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """A Gaussian layer (mean, std) per image, clipped-zoomed by `zoom`, zeroed below `threshold`, stored as 8 bits
    (the code's PNG for ImageMagick, truncated), motion-blurred (radius, sigma) at an angle uniform in [-135, -45)
    degrees; the image moved towards max(image, 1.5 grey + 0.5) by 1 - `keep`, plus the layer and the layer turned
    by 180 degrees."""
    mean, std, zoom, threshold, radius, sigma, keep = parameters
    n, channels, h, w = images.shape
    layer = torch.randn((n, 1, h, w), generator=generator, dtype=torch.float64) * std + mean
    layer = clipped_zoom(layer, zoom)
    layer = torch.floor(torch.where(layer < threshold, 0.0, layer).clamp(0, 1) * 255) / 255
    angles = torch.rand(n, generator=generator, dtype=torch.float64) * 90 - 135
    layer = motion_blur_at(layer, radius, sigma, angles).to(images.dtype)
    grey = (images * torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True) \
        if channels == 3 else images
    whitened = keep * images + (1 - keep) * torch.maximum(images, grey * 1.5 + 0.5)
    return (whitened + layer + layer.flip(2, 3)).clamp(0, 1)


def plasma_fractal(count: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """`count` (size, size) diamond-square height maps (size a power of two, wrapping around), scaled to [0, 1]:
    each square's centre and each diamond's centre the mean of its four corners plus wibble * U(-wibble, wibble)
    (the code's wibbledmean), wibble 100 at the coarsest step and divided by `decay` at each finer one."""
    maps = torch.zeros(count, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        jitter = torch.rand(total.shape, generator=generator, dtype=torch.float64) * 2 * wibble - wibble
        return total / 4 + wibble * jitter

    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        square_sums = corners + corners.roll(-1, 1)
        maps[:, half::step, half::step] = wibbled_mean(square_sums + square_sums.roll(-1, 2))
        centres = maps[:, half::step, half::step]
        maps[:, ::step, half::step] = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        maps[:, half::step, ::step] = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step //= 2
        wibble /= decay
    maps = maps - maps.amin(dim=(1, 2), keepdim=True)
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def fog(images: torch.Tensor, strength_decay: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """image + strength x plasma (a fractal per image, its top-left H x W of a map whose side is the next power of
    two, CIFAR's 32), rescaled by max / (max + strength), max the clean image's maximum."""
    strength, decay = strength_decay
    n, _, h, w = images.shape
    size = max(2, 1 << (max(h, w) - 1).bit_length())
    layer = plasma_fractal(n, size, decay, generator)[:, :h, :w].unsqueeze(1).to(images.dtype)
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images + strength * layer) * peak / (peak + strength)).clamp(0, 1)
