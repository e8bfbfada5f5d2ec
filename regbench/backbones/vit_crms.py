"""Pre-LN -> Pre-RMSNorm -> Pre-CRMSNorm conversion of a vit_tiny (Jiang et al., 2023, "Pre-RMSNorm and
Pre-CRMSNorm Transformers: Equivalent and Efficient Pre-LN Transformers"), giving the same function.

Pre-RMSNorm: each LayerNorm's gain and bias fold into the linear layer that reads its output (the attention's
q/k/v projection, the MLP's first layer, the head through the linear token pooling), and every layer that writes
the residual stream (patch embedding, position embedding, class token, each sublayer's output projection) is
recentred so that its output has zero mean over the features. The stream then has zero mean, so LayerNorm's
mean subtraction does nothing and it equals RMSNorm (with the same eps).
Pre-CRMSNorm: a zero-mean vector is its first d - 1 coordinates (the last is minus their sum). The writers keep
their first d - 1 output rows, the readers take W[:, :d-1] - W[:, d-1] (the last column absorbs the dropped
coordinate), and CRMSNorm computes the RMS of the whole d-vector from the d - 1.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from regbench.backbones.vit import ScaledNorm, SelfAttention, StreamSelfAttention, VisionTransformer
from regbench.backbones.vit_fuse import fold_before, input_projection, output_projection
from regbench.errors import UserError
from regbench.norms.rms import CompressedRMSNorm, RMSNormChannels


def check_pre_ln(model: VisionTransformer) -> None:
    kinds = {block.kind for block in model.blocks}
    norms = [norm.norm for block in model.blocks for norm in block.norms] + [model.final_norm]
    if kinds != {"pre"} or not all(isinstance(norm, nn.LayerNorm) and norm.elementwise_affine for norm in norms):
        raise UserError(f"the Pre-(C)RMSNorm conversion needs a Pre-LN vit_tiny (norm=layernorm, "
                        f"norm.placement=pre); this one has {', '.join(sorted(kinds))} blocks with "
                        f"{type(norms[0]).__name__}")


def recentre_rows(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Make a layer's outputs zero-mean over its output features (dim 0 of the weight)."""
    weight.sub_(weight.mean(dim=0, keepdim=True))
    if bias is not None:
        bias.sub_(bias.mean())


def recentre_stream(model: VisionTransformer) -> None:
    recentre_rows(model.patch_embed.weight, model.patch_embed.bias)
    model.pos_embed.sub_(model.pos_embed.mean(dim=-1, keepdim=True))
    if model.cls_token is not None:
        model.cls_token.sub_(model.cls_token.mean(dim=-1, keepdim=True))
    for block in model.blocks:
        for sublayer in block.sublayers:
            recentre_rows(*output_projection(sublayer))


def fold_layernorm(norm: ScaledNorm | nn.LayerNorm, weight: torch.Tensor, bias: torch.Tensor) -> RMSNormChannels:
    """Fold the norm's affine part (and a LayerNorm Scaling factor) into the linear layer after it; the RMSNorm
    that replaces it has unit gain."""
    factor = norm.scale if isinstance(norm, ScaledNorm) else 1.0
    layernorm = norm.norm if isinstance(norm, ScaledNorm) else norm
    fold_before(weight, bias, layernorm.weight * factor, layernorm.bias * factor)
    return RMSNormChannels(layernorm.normalized_shape[0], layernorm.eps, dim=-1).to(weight)


@torch.no_grad()
def to_pre_rmsnorm(model: VisionTransformer) -> VisionTransformer:
    """The Pre-RMSNorm vit_tiny that computes what the Pre-LN `model` computes."""
    check_pre_ln(model)
    converted = copy.deepcopy(model)
    recentre_stream(converted)
    for block in converted.blocks:
        for i, sublayer in enumerate(block.sublayers):
            block.norms[i] = ScaledNorm(fold_layernorm(block.norms[i], *input_projection(sublayer)), 1.0)
    converted.final_norm = fold_layernorm(converted.final_norm, converted.head.weight, converted.head.bias)
    return converted


def linear_from(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    linear = nn.Linear(weight.shape[1], weight.shape[0]).to(weight)
    linear.weight.copy_(weight)
    linear.bias.copy_(bias)
    return linear


def compress_columns(weight: torch.Tensor) -> torch.Tensor:
    """A reader of zero-mean d-vectors as a reader of their first d - 1 coordinates."""
    return weight[:, :-1] - weight[:, -1:]


def compress_attention(attention: SelfAttention) -> StreamSelfAttention:
    mha = attention.attn
    compressed = StreamSelfAttention(mha.embed_dim - 1, mha.embed_dim, mha.num_heads).to(mha.in_proj_weight)
    compressed.qkv = linear_from(compress_columns(mha.in_proj_weight), mha.in_proj_bias)
    compressed.out = linear_from(mha.out_proj.weight[:-1], mha.out_proj.bias[:-1])
    return compressed


def compress_mlp(mlp: nn.Sequential) -> nn.Sequential:
    first, activation, last = mlp
    return nn.Sequential(linear_from(compress_columns(first.weight), first.bias), activation,
                         linear_from(last.weight[:-1], last.bias[:-1]))


def compressed_norm(norm: nn.Module) -> CompressedRMSNorm:
    rms = norm.norm if isinstance(norm, ScaledNorm) else norm
    return CompressedRMSNorm(rms.weight.numel() - 1, rms.eps).to(rms.weight)


@torch.no_grad()
def to_pre_crmsnorm(model: VisionTransformer) -> VisionTransformer:
    """The Pre-CRMSNorm vit_tiny (a stream of embed_dim - 1 coordinates, the structure `norm=crmsnorm` builds)
    that computes what the Pre-LN `model` computes."""
    converted = to_pre_rmsnorm(model)
    embed = converted.patch_embed
    embed.weight = nn.Parameter(embed.weight[:-1].clone())
    embed.bias = nn.Parameter(embed.bias[:-1].clone())
    embed.out_channels -= 1
    converted.pos_embed = nn.Parameter(converted.pos_embed[..., :-1].clone())
    if converted.cls_token is not None:
        converted.cls_token = nn.Parameter(converted.cls_token[..., :-1].clone())
    for block in converted.blocks:
        attention, mlp = block.sublayers
        block.sublayers = nn.ModuleList([compress_attention(attention), compress_mlp(mlp)])
        block.norms = nn.ModuleList(ScaledNorm(compressed_norm(norm), 1.0) for norm in block.norms)
    converted.final_norm = compressed_norm(converted.final_norm)
    converted.head = linear_from(compress_columns(converted.head.weight), converted.head.bias)
    converted.num_features -= 1
    return converted
