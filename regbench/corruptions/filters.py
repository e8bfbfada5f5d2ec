"""The image filters CIFAR-10-C's corruptions share (corruption_ops.py and the modules beside it), in torch on
(N, C, H, W) batches: borders extended by index folding (so that any padding works on any image size), scipy's
Gaussian filter, scipy's linear zoom as matrices, and bilinear sampling at arbitrary positions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def fold_indices(indices: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Out-of-range indices mapped into 0..size-1: "nearest" repeats the edge (scipy's nearest, ImageMagick's edge),
    "reflect" mirrors about the edge's outer side, edge repeated (scipy's reflect, dcba|abcd), "reflect101"
    mirrors about the edge pixel (OpenCV's default border, dcb|abcd)."""
    if mode == "nearest" or size == 1:
        return indices.clamp(0, size - 1)
    if mode == "reflect":
        folded = indices.remainder(2 * size)
        return torch.where(folded < size, folded, 2 * size - 1 - folded)
    if mode == "reflect101":
        folded = indices.remainder(2 * size - 2)
        return torch.where(folded < size, folded, 2 * size - 2 - folded)
    raise ValueError(f"unknown border mode {mode!r}")


def pad(images: torch.Tensor, radius_h: int, radius_w: int, mode: str) -> torch.Tensor:
    h, w = images.shape[-2:]
    rows = fold_indices(torch.arange(-radius_h, h + radius_h), h, mode)
    cols = fold_indices(torch.arange(-radius_w, w + radius_w), w, mode)
    return images[..., rows, :][..., cols]


def filter2d(images: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Each channel correlated with the odd-sized 2-D `kernel`, centred, the border extended by `mode`."""
    n, c, h, w = images.shape
    kh, kw = kernel.shape
    flat = pad(images.reshape(n * c, 1, h, w), kh // 2, kw // 2, mode)
    return F.conv2d(flat, kernel.to(images).view(1, 1, kh, kw)).reshape(n, c, h, w)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian: radius int(truncate sigma + 0.5), normalized to sum 1."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    if sigma <= 0:  # scipy leaves an axis with sigma 0 unfiltered
        return (offsets == 0).double()
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def gaussian_filter(images: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter over height and width (skimage's `gaussian`), each channel apart."""
    kernel = gaussian_kernel(sigma, truncate)
    return filter2d(filter2d(images, kernel.view(1, -1), mode), kernel.view(-1, 1), mode)


def clipped_zoom_matrix(size: int, factor: float) -> torch.Tensor:
    """(size, size) matrix of the paper's code's clipped zoom along one axis: the central ceil(size / factor) pixels
    zoomed by scipy.ndimage.zoom (order 1: output pixel o samples input o (in - 1) / (out - 1) linearly, out =
    round(in * factor)), then the central `size` pixels kept."""
    cropped = math.ceil(size / factor)
    top = (size - cropped) // 2
    zoomed = int(round(cropped * factor))
    trim = (zoomed - size) // 2
    step = (cropped - 1) / (zoomed - 1) if zoomed > 1 else 0.0
    positions = torch.arange(trim, trim + size, dtype=torch.float64) * step
    lower = positions.floor().long().clamp(max=cropped - 1)
    weight_upper = positions - lower
    matrix = torch.zeros(size, size, dtype=torch.float64)
    rows = torch.arange(size)
    matrix[rows, top + lower] += 1 - weight_upper
    upper = (lower + 1).clamp(max=cropped - 1)
    matrix[rows, top + upper] += weight_upper
    return matrix


def clipped_zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    h, w = images.shape[-2:]
    rows = clipped_zoom_matrix(h, factor).to(images.dtype)
    cols = clipped_zoom_matrix(w, factor).to(images.dtype)
    return rows @ images @ cols.T


def sample_bilinear(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """images (N, C, H, W) read at the (N, H, W) positions (rows, cols), linearly between the four nearest pixels,
    those outside the image folded in by `mode`."""
    n, c, h, w = images.shape
    top, left = rows.floor(), cols.floor()
    down, right = (rows - top).unsqueeze(1), (cols - left).unsqueeze(1)
    top, left = top.long(), left.long()
    flat = images.reshape(n, c, h * w)

    def at(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        index = fold_indices(row, h, mode) * w + fold_indices(col, w, mode)
        return flat.gather(2, index.reshape(n, 1, h * w).expand(n, c, h * w)).reshape(n, c, h, w)

    upper = at(top, left) * (1 - right) + at(top, left + 1) * right
    lower = at(top + 1, left) * (1 - right) + at(top + 1, left + 1) * right
    return upper * (1 - down) + lower * down
