"""vit_tiny's pool option: a ViT/DeiT class token, and the last block's class attention kept for a loss."""
import pytest
import torch
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.errors import UserError

VIT = {"name": "vit_tiny", "embed_dim": 8, "depth": 2, "num_heads": 2}


def vit(pool: str):
    torch.manual_seed(0)
    return build_backbone({**VIT, "pool": pool}, {"name": "layernorm"}, (1, 8, 8), 3)


def test_cls_pool_prepends_a_learned_token_and_classifies_from_its_output():
    model = vit("cls")
    assert model.grid == (4, 4) and model.cls_token.shape == (1, 1, 8) and model.pos_embed.shape == (1, 17, 8)
    assert "cls_token" in dict(model.named_parameters())
    images = torch.randn(3, 1, 8, 8)
    patches = model.patch_embed(images).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.cls_token.expand(3, -1, -1), patches], dim=1) + model.pos_embed
    expected = model.head(model.final_norm(model.blocks(tokens))[:, 0])
    assert torch.allclose(model(images), expected, atol=1e-6)


def test_mean_pool_stays_the_default_without_a_class_token():
    model = build_backbone(VIT, {"name": "layernorm"}, (1, 8, 8), 3)
    assert model.pool == "mean" and model.cls_token is None and model.pos_embed.shape == (1, 16, 8)


def test_recorded_class_attention_is_the_head_averaged_softmax_row_of_the_class_token():
    model = vit("cls")
    model.record_class_attention()
    model.train()
    images = torch.randn(2, 1, 8, 8)
    captured = []
    hook = model.blocks[-1].sublayers[0].register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    model(images)
    hook.remove()
    # Recompute the last block's attention by hand from its input tokens and projection weights.
    mha = model.blocks[-1].sublayers[0].attn
    x = captured[0]
    q, k, _ = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    heads, dim = mha.num_heads, mha.embed_dim // mha.num_heads
    q, k = (t.view(2, 17, heads, dim).transpose(1, 2) for t in (q, k))
    attention = torch.softmax(q @ k.transpose(-2, -1) / dim ** 0.5, dim=-1).mean(dim=1)
    assert model.class_attention().shape == (2, 16)
    assert torch.allclose(model.class_attention(), attention[:, 0, 1:], atol=1e-6)
    assert not model.class_attention().requires_grad


def test_attention_is_recorded_in_training_only_and_only_when_asked():
    model = vit("cls")
    model.train()
    model(torch.randn(2, 1, 8, 8))
    assert model.blocks[-1].sublayers[0].weights is None
    model.record_class_attention()
    model.eval()
    model(torch.randn(2, 1, 8, 8))
    assert model.blocks[-1].sublayers[0].weights is None


def test_class_attention_needs_the_class_token():
    with pytest.raises(UserError, match="backbone.pool=cls"):
        vit("mean").record_class_attention()


def test_unknown_pool_is_one_line_naming_the_key():
    with pytest.raises(UserError, match=r"backbone.pool='max' is invalid: must be one of mean, cls"):
        vit("max")
