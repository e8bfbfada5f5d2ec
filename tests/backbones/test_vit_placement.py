"""vit_tiny norm placement: the structure each option promises, checked on a tiny input."""
import math

import pytest
import torch

from regbench.backbones import build_backbone
from regbench.backbones.vit import pick_patch_size
from regbench.errors import UserError

VIT = {"name": "vit_tiny", "embed_dim": 8, "depth": 4, "num_heads": 2}


def vit(**norm):
    torch.manual_seed(0)
    return build_backbone(VIT, {"name": "layernorm", **norm}, (1, 8, 8), 3)


def tokens():
    return torch.randn(2, 16, 8) * 3 + 1


def is_layer_normalized(x):
    return torch.allclose(x.mean(-1), torch.zeros(x.shape[:-1]), atol=1e-4) and \
        torch.allclose(x.var(-1, unbiased=False), torch.ones(x.shape[:-1]), atol=1e-2)


def test_post_ln_blocks_output_normalized_tokens_and_pre_ln_blocks_do_not():
    assert is_layer_normalized(vit(placement="post").blocks[0](tokens()))
    assert not is_layer_normalized(vit(placement="pre").blocks[0](tokens()))


def test_mix_ln_puts_post_ln_in_the_first_alpha_fraction_of_blocks():
    model = vit(placement="mix", mix_alpha=0.5)
    assert [b.kind for b in model.blocks] == ["post", "post", "pre", "pre"]
    assert [b.kind for b in vit(placement="mix").blocks] == ["post", "pre", "pre", "pre"]  # floor(0.25 * 4) = 1


def test_peri_ln_normalizes_each_sublayer_output_before_the_residual_sum():
    block = vit(placement="peri").blocks[0]
    x = tokens()
    captured = []
    hook = block.out_norms[0].register_forward_hook(lambda m, i, o: captured.append(o))
    out = block(x)
    hook.remove()
    assert is_layer_normalized(captured[0])
    after_attention = x + captured[0]
    expected = after_attention + block.out_norms[1](block.sublayers[1](block.norms[1](after_attention)))
    assert torch.allclose(out, expected, atol=1e-5)


def test_layernorm_scaling_multiplies_norm_outputs_in_block_l_by_one_over_sqrt_l():
    scaled, plain = vit(depth_scaling=True), vit()
    x = tokens()
    for index in range(4):
        ratio = scaled.blocks[index].norms[0](x) / plain.blocks[index].norms[0](x)
        assert torch.allclose(ratio, torch.full_like(ratio, 1 / math.sqrt(index + 1)), atol=1e-4)


@pytest.mark.parametrize("placement", ["pre", "post", "mix", "peri"])
@pytest.mark.parametrize("norm", ["rmsnorm", "powernorm"])
def test_every_placement_trains_with_every_token_norm(placement, norm):
    warmup = {"warmup_iters": 4000} if norm == "powernorm" else {}  # outside a run, not a fraction of it
    model = build_backbone(VIT, {"name": norm, "placement": placement, "depth_scaling": True, **warmup}, (1, 8, 8), 3)
    model(torch.randn(2, 1, 8, 8)).sum().backward()


def test_placement_on_a_convnet_is_one_line():
    with pytest.raises(UserError, match=r"^norm.placement=peri only applies to transformer backbones") as err:
        build_backbone({"name": "convnet", "widths": [4]}, {"name": "powernorm", "placement": "peri"}, (1, 8, 8), 3)
    assert "\n" not in str(err.value)


def test_patch_size_is_4_on_32px_2_on_8px_and_must_divide_the_image():
    assert pick_patch_size(None, 32, 32) == 4 and pick_patch_size(None, 8, 8) == 2
    with pytest.raises(UserError, match="patch_size=None is invalid: the automatic patch 4 must divide the 30x30"):
        pick_patch_size(None, 30, 30)
    with pytest.raises(UserError, match="patch_size=3 is invalid"):
        pick_patch_size(3, 32, 32)
