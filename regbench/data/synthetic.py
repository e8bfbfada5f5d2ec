"""Seeded Gaussian class blobs rendered as images: deterministic, learnable data for tests."""
from __future__ import annotations

import torch

from regbench.data.base import ImageData
from regbench.data.facts import check_synthetic_params
from regbench.data.split import stratified_split
from regbench.specs.data import DATASETS


def render_blobs(num_samples: int, num_classes: int, image_size: int, channels: int, noise_std: float,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class is a Gaussian bump at its own random centre; samples add pixel noise and jitter."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(num_classes, 2, generator=gen) * (image_size - 1)
    labels = torch.arange(num_samples) % num_classes
    jitter = torch.randn(num_samples, 2, generator=gen) * 0.5
    yx = centres[labels] + jitter
    grid = torch.arange(image_size, dtype=torch.float32)
    sigma = image_size / 6
    bump_y = torch.exp(-((grid[None] - yx[:, :1]) ** 2) / (2 * sigma ** 2))
    bump_x = torch.exp(-((grid[None] - yx[:, 1:]) ** 2) / (2 * sigma ** 2))
    bumps = bump_y[:, :, None] * bump_x[:, None, :]
    images = bumps[:, None].expand(-1, channels, -1, -1)
    images = images + noise_std * torch.randn(images.shape, generator=gen)
    return images.clamp(0, 1).mul(255).round().to(torch.uint8), labels


@DATASETS.register("synthetic")
def load_synthetic(*, root: str, download: bool, split_seed: int, num_samples: int, num_classes: int,
                   image_size: int, channels: int, noise_std: float,
                   test_fraction: float) -> ImageData:
    check_synthetic_params(num_samples, num_classes, image_size, channels, noise_std, test_fraction)
    images, labels = render_blobs(num_samples, num_classes, image_size, channels, noise_std, split_seed)
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    pixels = images[train_idx].float().div(255)
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    return ImageData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                     classes=[f"blob{c}" for c in range(num_classes)], mean=mean, std=std, hflip_ok=True)
