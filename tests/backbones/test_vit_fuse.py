"""Unified Normalization's fusion: at inference each norm is a fixed per-channel affine map, folded into the
adjacent linear layer; the fused vit_tiny gives the unfused model's eval logits and has no norm left."""
import pytest
import torch

from regbench.backbones import build_backbone
from regbench.backbones.vit_fuse import fuse_norms
from regbench.errors import UserError
from regbench.norms.powernorm import PowerNorm
from regbench.norms.unified import UnifiedNorm

VIT = {"name": "vit_tiny", "embed_dim": 8, "depth": 2, "num_heads": 2}


def trained_vit(norm, pool="mean", **options):
    """A vit_tiny whose norms have moved away from their initial statistics and affine parameters."""
    torch.manual_seed(0)
    model = build_backbone({**VIT, "pool": pool}, {"name": norm, "warmup_iters": 2, **options}, (1, 8, 8), 3)
    model.double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(8):
        optimizer.zero_grad()
        model(torch.randn(4, 1, 8, 8, dtype=torch.float64) * (1 + step)).square().mean().backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("norm", ["unified_norm", "powernorm"])
@pytest.mark.parametrize("pool,placement,depth_scaling", [("mean", "pre", False), ("cls", "pre", True),
                                                          ("mean", "peri", False)])
def test_fused_model_gives_the_eval_logits_without_any_norm(norm, pool, placement, depth_scaling):
    model = trained_vit(norm, pool, placement=placement, depth_scaling=depth_scaling)
    first = model.blocks[0].norms[0].norm
    assert getattr(first, "running_var", getattr(first, "running_phi", None)).ne(1).all()  # statistics have moved
    fused = fuse_norms(model)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    assert torch.allclose(fused(x), model(x), rtol=0, atol=1e-12)
    assert not any(isinstance(m, (UnifiedNorm, PowerNorm)) for m in fused.modules())


def test_post_norm_blocks_and_per_token_norms_cannot_be_fused():
    with pytest.raises(UserError, match="^block 0 is post-norm: its norm follows the residual sum"):
        fuse_norms(trained_vit("unified_norm", placement="post"))
    layernorm = build_backbone(VIT, {"name": "layernorm"}, (1, 8, 8), 3)
    with pytest.raises(UserError, match="^LayerNorm normalizes each input by its own statistics at inference"):
        fuse_norms(layernorm)
