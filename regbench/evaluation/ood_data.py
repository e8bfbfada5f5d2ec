"""An out-distribution test split shaped like the in-distribution: its images resized (bilinear, antialiased) to
the in-distribution's height and width, given its channel count (grey repeated, colour averaged) and normalized
with the in-distribution's mean and std, as the trained model sees its own test images. `heldout` is the
in-distribution's own test images of the classes data.holdout_classes held out of training."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from regbench.specs.data import DATASETS
from regbench.specs.evaluation import HELD_OUT


def ood_images(name: str, data: Mapping[str, Any], datamodule, max_images: int, seed: int) -> torch.Tensor:
    """At most `max_images` test images of dataset `name` (a seeded random subset, in order): the datamodule's
    held-out classes, or a dataset loaded from the in-distribution's data root with its own default parameters."""
    if name == HELD_OUT:
        images = datamodule.held_out_test_images
    else:
        images = DATASETS.create(name, {}, path=f"eval.ood.datasets[{name}]", root=data["root"], download=False,
                                 split_seed=data["split_seed"]).test_x
    return like_in_distribution(seeded_subset(images, max_images, seed), datamodule.image_shape,
                                datamodule.mean[0, :, 0, 0], datamodule.std[0, :, 0, 0])


def seeded_subset(images: torch.Tensor, max_images: int, seed: int) -> torch.Tensor:
    """At most `max_images` of the images, drawn with `seed`, in their order."""
    if len(images) > max_images:
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_images]
        images = images[keep.sort().values]
    return images


def like_in_distribution(images: torch.Tensor, image_shape: tuple[int, int, int], mean: torch.Tensor,
                         std: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images as float (N, C', H', W') normalized like the in-distribution's."""
    channels, height, width = image_shape
    pixels = images.float() / 255
    if pixels.shape[1] != channels:
        pixels = pixels.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1)
    if pixels.shape[2:] != (height, width):
        pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False,
                               antialias=True).clamp(0, 1)
    return (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
