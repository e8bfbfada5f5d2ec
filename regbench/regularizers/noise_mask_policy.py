"""The policy network of the Policy Gradient-Driven Noise Mask (Yavuz & Yang, arXiv 2406.14568): from an image,
the two shape parameters of a Beta distribution for every cell of a grid x grid noise mask, and the mask's sampling,
upsampling and blurring. The REINFORCE objective that trains it is `reinforce_loss`."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur


class ChannelAgnosticFeatures(nn.Module):
    """A light two-conv feature extractor applied to each image channel alone with shared weights, its features
    averaged over the channels: the policy is built before the data, so it cannot know the channel count."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels = images.shape[:2]
        per_channel = self.layers(images.reshape(batch * channels, 1, *images.shape[2:]))
        return per_channel.view(batch, channels, -1).mean(dim=1)


def shape_head(width: int, cells: int) -> nn.Sequential:
    """Features -> one log shape parameter per mask cell (the official heads: Linear, BatchNorm, ReLU, Linear)."""
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Linear(width, cells))


class MaskPolicy(nn.Module):
    """images (B, C, H, W) -> Beta(alpha, beta) over the (B, grid*grid) mask cells.

    As in the official code, each log shape parameter is `prior_weight * prior + (1 - prior_weight) * head(x)`,
    where the prior is a running mean (momentum `prior_momentum`) of the heads' batch means, started uniform in
    [0, 1); the shape parameters are the exponentials, so they stay positive."""

    def __init__(self, grid: int, width: int, prior_weight: float, prior_momentum: float, seed: int):
        super().__init__()
        cells = grid * grid
        self.grid, self.prior_weight, self.prior_momentum = grid, prior_weight, prior_momentum
        self.features = ChannelAgnosticFeatures(width)
        self.alpha_head, self.beta_head = shape_head(width, cells), shape_head(width, cells)
        start = torch.rand(2, cells, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("log_alpha_prior", start[0].clone())
        self.register_buffer("log_beta_prior", start[1].clone())

    def forward(self, images: torch.Tensor) -> torch.distributions.Beta:
        features = self.features(images)
        log_alpha, log_beta = self.alpha_head(features), self.beta_head(features)
        w = self.prior_weight
        dist = torch.distributions.Beta((w * self.log_alpha_prior + (1 - w) * log_alpha).exp(),
                                        (w * self.log_beta_prior + (1 - w) * log_beta).exp())
        if self.training:  # the prior follows the heads' outputs, after it shaped this batch's distribution
            with torch.no_grad():
                self.log_alpha_prior.lerp_(log_alpha.mean(dim=0), 1 - self.prior_momentum)
                self.log_beta_prior.lerp_(log_beta.mean(dim=0), 1 - self.prior_momentum)
        return dist


def blur_kernel_size(sigma: float) -> int:
    """The official setting pairs sigma 6 with a 13-pixel kernel: 2 * round(sigma) + 1 (1: no blur)."""
    return 2 * round(sigma) + 1


def mask_image(cells: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """(B, grid*grid) sampled cells -> (B, 1, H, W) mask: each cell stretched over its block of pixels (nearest),
    then a Gaussian blur of `sigma` pixels softens the block edges."""
    grid = round(cells.shape[1] ** 0.5)
    mask = F.interpolate(cells.view(-1, 1, grid, grid), size=(height, width), mode="nearest")
    kernel = blur_kernel_size(sigma)
    return mask if kernel == 1 else gaussian_blur(mask, [kernel, kernel], [sigma, sigma])


def reinforce_loss(log_prob: torch.Tensor, cost: torch.Tensor, baseline: str) -> torch.Tensor:
    """REINFORCE for the reward -cost: the batch mean of log pi(mask | image) * (cost - b), whose gradient is the
    negative policy gradient of the expected reward. `cost` is the classifier's per-sample cross-entropy on the
    masked images (a constant here); b is 0 (`none`, the paper) or the batch's mean cost (`batch_mean`, the usual
    variance-reducing baseline)."""
    cost = cost.detach()
    advantage = cost - cost.mean() if baseline == "batch_mean" else cost
    return (log_prob * advantage).mean()


__all__ = ["MaskPolicy", "blur_kernel_size", "mask_image", "reinforce_loss"]
