"""Batch size 1, BN-only freezing, SELU init, SkipInit, and one-line errors for bad norm parameters."""
import math

import pytest
import torch
import torch.nn as nn

from regbench.backbones import build_backbone
from regbench.errors import UserError
from regbench.norms import get_norm, norm_layer_from_config
from regbench.optim import build_optimizer
from regbench.run.train import check_batch_norm_batch

CONVNET = {"name": "convnet", "widths": [4, 8]}
# Small group counts for the narrow convnet; absolute values for the norms whose config defaults are fractions of a
# run (these are built outside one).
SMALL_GROUPS = {"groupnorm": {"groups": 2}, "evonorm_s0": {"groups": 2}, "bcn_ws": {"groups": 2},
                "powernorm": {"warmup_iters": 4000}, "ghost_batchnorm": {"virtual_batch_size": 128}}


@pytest.mark.parametrize("name", ["groupnorm", "layernorm", "rmsnorm", "instancenorm", "evonorm_s0", "frn",
                                  "bcn_ws", "powernorm", "none"])
def test_batch_independent_norms_train_with_batch_size_one(name):
    model = build_backbone(CONVNET, {"name": name, **SMALL_GROUPS.get(name, {})}, (1, 8, 8), 3)
    check_batch_norm_batch(model, 1)
    model(torch.randn(1, 1, 8, 8)).sum().backward()


@pytest.mark.parametrize("name", ["batchnorm", "ghost_batchnorm", "ws_batchnorm", "bn_only", "evonorm_b0"])
def test_batch_statistics_norms_refuse_a_training_batch_of_one(name):
    model = build_backbone(CONVNET, {"name": name, **SMALL_GROUPS.get(name, {})}, (1, 8, 8), 3)
    with pytest.raises(UserError, match="batch_size=1.*batch-independent norm") as err:
        check_batch_norm_batch(model, 1)
    assert "\n" not in str(err.value)
    check_batch_norm_batch(model, 2)


def test_bn_only_trains_only_batchnorm_affine_parameters():
    model = build_backbone(CONVNET, {"name": "bn_only"}, (1, 8, 8), 3)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    bn_params = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, nn.BatchNorm2d)
                 for p in ("weight", "bias")}
    assert trainable == bn_params and trainable
    optimizer = build_optimizer({"name": "sgd", "lr": 0.1, "weight_decay": 0.0}, model)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(bn_params)


def test_selu_mlp_uses_lecun_normal_init_selu_and_alpha_dropout():
    model = build_backbone({"name": "mlp", "hidden": [512]}, {"name": "selu"}, (1, 16, 16), 3)
    weight = model.linears[0].weight
    assert abs(weight.std().item() - 1 / math.sqrt(256)) < 0.1 / math.sqrt(256)
    assert isinstance(model.norms[0][0], nn.SELU) and isinstance(model.norms[0][1], nn.AlphaDropout)


def test_no_norm_resnet_blocks_start_as_the_identity():
    model = build_backbone({"name": "resnet18", "width": 4}, {"name": "none"}, (1, 8, 8), 3)
    block = model.stages[0]  # identity shortcut: out = relu(0 * branch + x)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert block.scale.alpha.grad is not None


@pytest.mark.parametrize("cfg, match", [
    ({"name": "groupnorm", "groups": 0}, r"norm.groups=0 is invalid"),
    ({"name": "ghost_batchnorm", "virtual_batch_size": 1}, r"norm.virtual_batch_size=1 is invalid"),
    ({"name": "batchnorm", "placement": "peri"}, r"norm.placement is not a parameter of norm 'batchnorm'"),
    ({"name": "layernorm", "placement": "middle"}, r"norm.placement='middle' is invalid: allowed: pre, post"),
    ({"name": "rmsnorm", "mix_alpha": 2}, r"norm.mix_alpha=2 is invalid"),
    ({"name": "batchnormm"}, r"norm='batchnormm' is not a known norm"),
])
def test_bad_norm_parameters_are_one_line(cfg, match):
    with pytest.raises(UserError, match=match) as err:
        norm_layer_from_config(cfg)
    assert "\n" not in str(err.value)


def test_get_norm_builds_by_name():
    assert isinstance(get_norm("groupnorm", 8, groups=4), nn.GroupNorm)
