"""CIFAR-10-C's JPEG compression and elastic transform (Hendrycks & Dietterich, ICLR 2019) on (N, C, H, W) images
in [0, 1], reimplementing github.com/hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py: PIL's JPEG codec
per image (coding is per image by nature), and the random affine warp (OpenCV's warpAffine) followed by a smooth
random displacement field (scipy's map_coordinates), batched in torch."""
from __future__ import annotations

from io import BytesIO

import numpy as np
import torch
from PIL import Image

from regbench.corruptions.filters import gaussian_filter, sample_bilinear


def jpeg_round_trip(picture: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 (H, W) or (H, W, 3) picture saved by PIL as JPEG at `quality` and decoded."""
    encoded = BytesIO()
    Image.fromarray(picture, "RGB" if picture.ndim == 3 else "L").save(encoded, "JPEG", quality=quality)
    return np.asarray(Image.open(encoded))


def jpeg_compression(images: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    """Each image as 8 bits (the pixels x 255, rounded) through PIL's JPEG at `quality`: colour images as RGB (PIL's
    default 4:2:0 chroma subsampling), every other channel as its own greyscale picture."""
    n, c, h, w = images.shape
    pixels = (images * 255).round().clamp(0, 255).to(torch.uint8)
    pictures = pixels.permute(0, 2, 3, 1).numpy() if c == 3 else pixels.reshape(n * c, h, w).numpy()
    decoded = torch.from_numpy(np.stack([jpeg_round_trip(picture, quality) for picture in pictures]))
    decoded = decoded.permute(0, 3, 1, 2) if c == 3 else decoded.reshape(n, c, h, w)
    return decoded.to(images.dtype) / 255


def affine_through(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine maps taking the three (x, y) points `source` (N, 3, 2) to `target` (cv2.getAffineTransform)."""
    homogeneous = torch.cat([source, torch.ones_like(source[..., :1])], dim=-1)
    return torch.linalg.solve(homogeneous, target).transpose(1, 2)


def elastic_warp(images: torch.Tensor, corner_shifts: torch.Tensor, noise: torch.Tensor, alpha: float,
                 sigma: float) -> torch.Tensor:
    """The code's two warps: the affine map moving the points centre + (s, s), (s, -s), (-s, -s) (s a third of the
    side) by `corner_shifts` (N, 3, 2), applied as OpenCV's warpAffine (each output pixel reads the inverse map's
    position, bilinearly, the border reflected about the edge pixel); then each pixel read at its position plus
    alpha x (`noise` (N, 2, H, W), x and y, smoothed by scipy's Gaussian at `sigma`, truncated at 3 sigma, border
    reflected), bilinearly with scipy's reflect border (map_coordinates, order 1)."""
    n, _, h, w = images.shape
    dtype = torch.float64
    centre, third = torch.tensor([w // 2, h // 2], dtype=dtype), min(h, w) // 3
    source = centre + third * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], dtype=dtype)
    source = source.expand(n, 3, 2)
    inverse = affine_through(source + corner_shifts.to(dtype), source)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    read_x = inverse[:, 0, 0, None, None] * cols + inverse[:, 0, 1, None, None] * rows + inverse[:, 0, 2, None, None]
    read_y = inverse[:, 1, 0, None, None] * cols + inverse[:, 1, 1, None, None] * rows + inverse[:, 1, 2, None, None]
    warped = sample_bilinear(images, read_y.to(images.dtype), read_x.to(images.dtype), "reflect101")
    shifts = gaussian_filter(noise.to(images.dtype), sigma, mode="reflect", truncate=3.0) * alpha
    return sample_bilinear(warped, rows.to(images.dtype) + shifts[:, 1], cols.to(images.dtype) + shifts[:, 0],
                           "reflect").clamp(0, 1)


def elastic_transform(images: torch.Tensor, side_fractions: tuple[float, float, float],
                      generator: torch.Generator) -> torch.Tensor:
    """alpha, sigma and the affine corners' shift bound as fractions of the image's side (the code's multiples of
    CIFAR's 32): corner shifts uniform in [-bound, bound), then the x and y noise uniform in [-1, 1)."""
    n, _, h, w = images.shape
    alpha, sigma, bound = (fraction * min(h, w) for fraction in side_fractions)
    corner_shifts = (torch.rand(n, 3, 2, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    noise = torch.rand(n, 2, h, w, generator=generator, dtype=torch.float64) * 2 - 1
    return elastic_warp(images, corner_shifts, noise, alpha, sigma)
