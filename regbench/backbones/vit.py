"""ViT-Tiny (Dosovitskiy et al., 2021; tiny = 192 wide, 12 blocks, 3 heads, as in DeiT) for small images,
with the norm placement as an ablation: pre, post, Mix-LN, Peri-LN, LayerNorm Scaling (regbench.specs.placement).
Features are the mean of the output tokens (pool=mean) or a class token's output (pool=cls, as in ViT/DeiT).
A norm that compresses the stream (crmsnorm) makes the residual stream embed_dim - 1 wide: the zero-mean
embed_dim vectors of a Pre-CRMSNorm Transformer without their last coordinate (Jiang et al., 2023)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.backbones.base import Classifier
from regbench.specs.backbones import BACKBONES
from regbench.errors import UserError, check
from regbench.norms import NormLayer


class ScaledNorm(nn.Module):
    """A token norm whose output is multiplied by a fixed `scale` (LayerNorm Scaling's 1/sqrt(l))."""

    def __init__(self, norm: nn.Module, scale: float):
        super().__init__()
        self.norm, self.scale = norm, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(x)
        return out if self.scale == 1.0 else out * self.scale


class SelfAttention(nn.Module):
    """Multi-head self-attention. With `record_weights` set, each training forward keeps its head-averaged
    attention map (B, N, N), detached, in `weights`, so a loss can read it without another forward pass."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.record_weights = False
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.record_weights and self.training:
            out, weights = self.attn(x, x, x, need_weights=True, average_attn_weights=True)
            self.weights = weights.detach()
            return out
        return self.attn(x, x, x, need_weights=False)[0]

    def input_projection(self) -> tuple[nn.Parameter, nn.Parameter]:
        return self.attn.in_proj_weight, self.attn.in_proj_bias

    def output_projection(self) -> tuple[nn.Parameter, nn.Parameter]:
        return self.attn.out_proj.weight, self.attn.out_proj.bias


class StreamSelfAttention(nn.Module):
    """Multi-head self-attention over `dim` features between projections from and back to a residual stream of
    another width (`stream`): nn.MultiheadAttention takes its queries at the attention width. Heads split q, k
    and v as nn.MultiheadAttention does; `record_weights` and `weights` as in SelfAttention."""

    def __init__(self, stream: int, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(stream, 3 * dim)
        self.out = nn.Linear(dim, stream)
        self.record_weights = False
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if self.record_weights and self.training:
            weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
            self.weights = weights.mean(dim=1).detach()
            heads = weights @ v
        else:
            heads = F.scaled_dot_product_attention(q, k, v)
        return self.out(heads.transpose(1, 2).reshape(batch, tokens, -1))

    def input_projection(self) -> tuple[nn.Parameter, nn.Parameter]:
        return self.qkv.weight, self.qkv.bias

    def output_projection(self) -> tuple[nn.Parameter, nn.Parameter]:
        return self.out.weight, self.out.bias


class Block(nn.Module):
    """One transformer block; `kind` says where its norms sit (pre, post or peri). The residual stream is
    `stream` wide, the attention and the MLP's hidden layer are sized from `dim`."""

    def __init__(self, dim: int, stream: int, num_heads: int, mlp_ratio: float, norm_layer: NormLayer, kind: str,
                 scale: float):
        super().__init__()
        self.kind = kind
        hidden = int(dim * mlp_ratio)
        attention = SelfAttention(dim, num_heads) if stream == dim else StreamSelfAttention(stream, dim, num_heads)
        self.sublayers = nn.ModuleList([attention, nn.Sequential(nn.Linear(stream, hidden), nn.GELU(),
                                                                 nn.Linear(hidden, stream))])
        self.norms = nn.ModuleList(ScaledNorm(norm_layer.tokens(stream), scale) for _ in self.sublayers)
        # Peri-LN also normalizes each sublayer's output before it joins the residual stream.
        self.out_norms = nn.ModuleList(ScaledNorm(norm_layer.tokens(stream), scale) for _ in self.sublayers) \
            if kind == "peri" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (sublayer, norm) in enumerate(zip(self.sublayers, self.norms)):
            if self.kind == "post":
                x = norm(x + sublayer(x))
            elif self.kind == "peri":
                x = x + self.out_norms[i](sublayer(norm(x)))
            else:
                x = x + sublayer(norm(x))
        return x


def pick_patch_size(patch_size: int | None, height: int, width: int) -> int:
    """Patch 4 on 32x32 (64 tokens), patch 2 on 8x8 (16 tokens); an explicit size must divide the image."""
    auto = patch_size is None
    if auto:
        patch_size = 2 if max(height, width) <= 16 else 4
    check(isinstance(patch_size, int) and not isinstance(patch_size, bool) and patch_size > 0
          and height % patch_size == 0 and width % patch_size == 0, "patch_size", None if auto else patch_size,
          f"{'the automatic patch ' + str(patch_size) if auto else 'it'} must divide the {height}x{width} images; "
          f"set backbone.patch_size to a divisor of both")
    return patch_size


class VisionTransformer(Classifier):
    def __init__(self, image_shape: tuple[int, int, int], patch_size: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, num_classes: int, norm_layer: NormLayer, conv_layer: type[nn.Conv2d],
                 pool: str = "mean"):
        super().__init__()
        channels, height, width = image_shape
        stream = dim - 1 if norm_layer.compresses_stream else dim
        self.patch_embed = conv_layer(channels, stream, patch_size, stride=patch_size)
        # Tokens run over the patch grid row by row (the conv's flattened output).
        self.grid = (height // patch_size, width // patch_size)
        self.pool = pool
        # ViT/DeiT: a learned class token in front of the patches, with a position embedding of its own.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, stream)) if pool == "cls" else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        num_tokens = self.grid[0] * self.grid[1] + (pool == "cls")
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, stream))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        placement = norm_layer.placement
        kinds = [placement.block_kind(i, depth) for i in range(depth)]
        scales = [1 / math.sqrt(i + 1) if placement.depth_scaling else 1.0 for i in range(depth)]
        self.blocks = nn.Sequential(*(Block(dim, stream, num_heads, mlp_ratio, norm_layer, kind, scale)
                                      for kind, scale in zip(kinds, scales)))
        # After post-LN blocks the stream is already normalized; after pre/peri blocks it is not.
        self.final_norm = nn.Identity() if kinds[-1] == "post" else norm_layer.tokens(stream)
        self.num_features = stream
        self.head = nn.Linear(stream, num_classes)

    def no_weight_decay(self) -> set[str]:
        """Embeddings exempt from weight decay, as in timm's and DeiT's ViTs."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        out = self.final_norm(self.blocks(tokens + self.pos_embed))
        return out[:, 0] if self.cls_token is not None else out.mean(dim=1)

    @property
    def last_attention(self) -> SelfAttention | StreamSelfAttention:
        return self.blocks[-1].sublayers[0]

    def record_class_attention(self) -> None:
        """From now on, each training forward keeps the last block's attention for `class_attention`."""
        if self.cls_token is None:
            raise UserError("the class token's attention needs backbone.pool=cls; this vit_tiny has pool=mean")
        self.last_attention.record_weights = True

    def class_attention(self) -> torch.Tensor:
        """(B, patches): the class token's attention over the patch tokens in the last block, averaged over the
        heads, from the latest training forward (the class token's attention to itself left out)."""
        weights = self.last_attention.weights
        if weights is None:
            raise RuntimeError("no attention recorded: call record_class_attention() and run a training forward")
        return weights[:, 0, 1:]


@BACKBONES.register("vit_tiny")
def vit_tiny(*, image_shape, num_classes, norm_layer, conv_layer, embed_dim: int, depth: int,
             num_heads: int, mlp_ratio: float, patch_size: int | None,
             pool: str) -> VisionTransformer:
    check(embed_dim % num_heads == 0, "num_heads", num_heads, f"must divide embed_dim ({embed_dim})")
    patch_size = pick_patch_size(patch_size, image_shape[1], image_shape[2])
    return VisionTransformer(image_shape, patch_size, embed_dim, depth, num_heads, mlp_ratio, num_classes,
                             norm_layer, conv_layer, pool)
