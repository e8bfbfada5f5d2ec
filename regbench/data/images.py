"""Image files to uint8 tensors, and the geometry both storage paths share.

Stored view (evaluation, and what the in-memory path keeps): resize the shorter side to
round(image_size / crop_fraction), then a centred image_size x image_size crop (crop_fraction 0.875 is the
ImageNet convention, 256 -> 224; 1.0 keeps the whole shorter side).
Random-resized crop (Szegedy et al., 2015, as torchvision's RandomResizedCrop): a box of relative area in
RESIZED_CROP_SCALE and aspect ratio in RESIZED_CROP_RATIO (log-uniform), ten tries, else the central crop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from regbench.errors import UserError

RESIZED_CROP_SCALE = (0.08, 1.0)
RESIZED_CROP_RATIO = (3 / 4, 4 / 3)
RESIZED_CROP_TRIES = 10


def read_image(path: str, channels: int) -> torch.Tensor:
    """(channels, H, W) uint8: torchvision's decoder (libjpeg-turbo, libpng), PIL for the formats it lacks."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(path), mode=ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY)
    except (RuntimeError, ValueError):
        pass
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = torch.frombuffer(bytearray(image.convert("RGB" if channels == 3 else "L").tobytes()),
                                      dtype=torch.uint8)
            return pixels.view(image.height, image.width, channels).permute(2, 0, 1).contiguous()
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"{path} is not a readable image ({type(err).__name__}); delete or replace it") from None


def stored_view(image: torch.Tensor, size: int, crop_fraction: float) -> torch.Tensor:
    """Resize the shorter side to round(size / crop_fraction) (antialiased bilinear), then centre-crop size x size."""
    from torchvision.transforms.v2.functional import center_crop, resize

    return center_crop(resize(image, [round(size / crop_fraction)], antialias=True), [size, size])


def resized_crop_boxes(height: torch.Tensor, width: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, 4) boxes (top, left, h, w) of torchvision's RandomResizedCrop for images of the given sizes, drawn for
    the whole batch at once: each image takes its first of RESIZED_CROP_TRIES candidate boxes that fits."""
    batch, device = height.shape[0], gen.device
    height, width = height.to(device, torch.float64), width.to(device, torch.float64)
    area = (height * width)[:, None]
    tries = (batch, RESIZED_CROP_TRIES)
    scale = torch.empty(tries, dtype=torch.float64, device=device).uniform_(*RESIZED_CROP_SCALE, generator=gen)
    log_low, log_high = math.log(RESIZED_CROP_RATIO[0]), math.log(RESIZED_CROP_RATIO[1])
    ratio = torch.empty(tries, dtype=torch.float64, device=device).uniform_(log_low, log_high, generator=gen).exp()
    w = (area * scale * ratio).sqrt().round()
    h = (area * scale / ratio).sqrt().round()
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    first = fits.double().argmax(1)
    chosen = torch.arange(batch, device=device)
    h, w, found = h[chosen, first], w[chosen, first], fits.any(1)
    # The fallback: the central crop clamped to the allowed aspect ratios.
    in_ratio = width / height
    fallback_w = torch.where(in_ratio < RESIZED_CROP_RATIO[0], width,
                             torch.where(in_ratio > RESIZED_CROP_RATIO[1], (height * RESIZED_CROP_RATIO[1]).round(),
                                         width))
    fallback_h = torch.where(in_ratio < RESIZED_CROP_RATIO[0], (width / RESIZED_CROP_RATIO[0]).round(), height)
    h, w = torch.where(found, h, fallback_h), torch.where(found, w, fallback_w)
    top_u = torch.rand(batch, generator=gen, dtype=torch.float64, device=device)
    left_u = torch.rand(batch, generator=gen, dtype=torch.float64, device=device)
    top = torch.where(found, (top_u * (height - h + 1)).floor(), ((height - h) / 2).floor())
    left = torch.where(found, (left_u * (width - w + 1)).floor(), ((width - w) / 2).floor())
    return torch.stack([top, left, h, w], 1).long()


def resized_crop_batch(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each image's box resized to `size` (bilinear), as one grid_sample over the batch: the in-memory path's
    random-resized crop on stored float images."""
    batch, _, height, width = images.shape
    boxes = boxes.to(images.device, images.dtype)
    top, left, h, w = boxes.unbind(1)
    # Affine grid in [-1, 1] coordinates (align_corners=False): the box's centre and half-extent.
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [batch, images.shape[1], *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return image.flip(-1) if torch.rand(1, generator=gen).item() < 0.5 else image

