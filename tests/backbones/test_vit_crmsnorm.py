"""Pre-CRMSNorm (Jiang et al., 2023): CRMSNorm's compressed RMS, and the paper's equivalence claim -- a Pre-LN
vit_tiny and its Pre-RMSNorm and Pre-CRMSNorm conversions compute the same logits."""
import pytest
import torch
import torch.nn as nn

from regbench.backbones import build_backbone
from regbench.backbones.vit import SelfAttention, StreamSelfAttention
from regbench.backbones.vit_crms import to_pre_crmsnorm, to_pre_rmsnorm
from regbench.errors import UserError
from regbench.norms import norm_layer_from_config
from regbench.norms.rms import CompressedRMSNorm

VIT = {"name": "vit_tiny", "embed_dim": 8, "depth": 3, "num_heads": 2}


def pre_ln_vit(pool="mean", **norm):
    """A Pre-LN vit_tiny in float64 whose LayerNorm gains and biases are far from their initial 1 and 0."""
    torch.manual_seed(0)
    model = build_backbone({**VIT, "pool": pool}, {"name": "layernorm", **norm}, (1, 8, 8), 3).double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_()
        model.pos_embed.normal_(1.0)  # a stream with a large mean, which the conversion must remove
    return model


def images():
    return torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 + 0.5


def test_crmsnorm_of_the_first_d_minus_1_coordinates_is_rmsnorm_and_layernorm_of_the_zero_mean_vector():
    vector = torch.randn(5, 6, dtype=torch.float64) * 3
    vector -= vector.mean(dim=-1, keepdim=True)
    crms = CompressedRMSNorm(5, eps=1e-5).double()
    expected = vector / (vector.pow(2).mean(dim=-1, keepdim=True) + 1e-5).sqrt()
    assert torch.allclose(crms(vector[:, :-1]), expected[:, :-1], rtol=0, atol=1e-12)
    layernorm = nn.functional.layer_norm(vector, (6,), eps=1e-5)
    assert torch.allclose(crms(vector[:, :-1]), layernorm[:, :-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("pool", ["mean", "cls"])
@pytest.mark.parametrize("depth_scaling", [False, True])
def test_pre_ln_pre_rmsnorm_and_pre_crmsnorm_give_the_same_logits(pool, depth_scaling):
    model = pre_ln_vit(pool, depth_scaling=depth_scaling)
    x = images()
    logits = model(x)
    for converted in (to_pre_rmsnorm(model), to_pre_crmsnorm(model)):
        assert torch.allclose(converted(x), logits, rtol=0, atol=1e-12)
    assert torch.equal(model(x), logits)  # the conversions copy: the Pre-LN model is untouched


def test_the_pre_rmsnorm_stream_has_zero_mean_and_the_norms_are_rmsnorm_without_gain():
    converted = to_pre_rmsnorm(pre_ln_vit())
    streams = []
    for block in converted.blocks:
        block.register_forward_hook(lambda module, inputs, output: streams.append(output))
    converted(images())
    assert all(stream.mean(dim=-1).abs().max() < 1e-12 for stream in streams)
    norms = [norm.norm for block in converted.blocks for norm in block.norms] + [converted.final_norm]
    assert all(type(norm).__name__ == "RMSNormChannels" and torch.equal(norm.weight, torch.ones_like(norm.weight))
               for norm in norms)


def test_the_converted_model_has_the_structure_norm_crmsnorm_builds():
    converted = to_pre_crmsnorm(pre_ln_vit("cls"))
    built = build_backbone({**VIT, "pool": "cls"}, {"name": "crmsnorm"}, (1, 8, 8), 3)
    assert {k: v.shape for k, v in converted.state_dict().items()} == \
        {k: v.shape for k, v in built.state_dict().items()}
    assert built.num_features == converted.num_features == 7 and built.pos_embed.shape[-1] == 7
    built.load_state_dict(converted.float().state_dict())
    x = images().float()
    assert torch.allclose(built.eval()(x), converted(x), atol=1e-5)


def test_stream_attention_at_full_width_is_nn_multihead_attention():
    torch.manual_seed(0)
    reference, attention = SelfAttention(8, 2), StreamSelfAttention(8, 8, 2)
    with torch.no_grad():
        attention.qkv.weight.copy_(reference.attn.in_proj_weight)
        attention.qkv.bias.copy_(reference.attn.in_proj_bias)
        attention.out.weight.copy_(reference.attn.out_proj.weight)
        attention.out.bias.copy_(reference.attn.out_proj.bias)
    x = torch.randn(2, 5, 8)
    assert torch.allclose(attention(x), reference(x), atol=1e-6)
    reference.record_weights = attention.record_weights = True
    assert torch.allclose(attention(x), reference(x), atol=1e-6)
    assert torch.allclose(attention.weights, reference.weights, atol=1e-6)


def test_conversion_refuses_a_model_that_is_not_pre_ln_in_one_line():
    post = build_backbone(VIT, {"name": "layernorm", "placement": "post"}, (1, 8, 8), 3)
    rms = build_backbone(VIT, {"name": "rmsnorm"}, (1, 8, 8), 3)
    for model in (post, rms):
        with pytest.raises(UserError, match=r"^the Pre-\(C\)RMSNorm conversion needs a Pre-LN vit_tiny") as err:
            to_pre_crmsnorm(model)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("placement", ["post", "mix", "peri"])
def test_crmsnorm_refuses_placements_other_than_pre(placement):
    with pytest.raises(UserError, match=rf"^norm.placement={placement} is invalid for norm=crmsnorm: allowed: pre$"):
        norm_layer_from_config({"name": "crmsnorm", "placement": placement})


def test_crmsnorm_trains_on_vit_tiny_and_is_refused_elsewhere():
    model = build_backbone(VIT, {"name": "crmsnorm", "depth_scaling": True}, (1, 8, 8), 3)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(UserError, match="^norm=crmsnorm with backbone=convnet is not supported: norm=crmsnorm is "
                                        "only for backbone=vit_tiny"):
        build_backbone({"name": "convnet", "widths": [4]}, {"name": "crmsnorm"}, (1, 8, 8), 3)
