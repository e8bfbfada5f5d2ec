"""Every backbone x every norm: forward/backward on CPU when compatible, one UserError line when not."""
from pathlib import Path

import pytest
import torch
import yaml

from regbench.backbones import BACKBONES, build_backbone, dry_build_backbone
from regbench.errors import UserError
from regbench.norms import NORMS, uses_batch_statistics
from regbench.specs.backbones import BACKBONE_TRAITS
from regbench.specs.compat import check_backbone_norm, check_norm_batch, check_norm_widths
from regbench.specs.norms import NORM_TRAITS
from regbench.specs.placement import Placement

CONF = Path(__file__).resolve().parents[2] / "conf"

TINY_BACKBONES = {
    "convnet": {"widths": [4, 8]},
    "mlp": {"hidden": [8]},
    "quadratic_mlp": {"width": 8},
    "resnet18": {"width": 4},
    "preact_resnet18": {"width": 4},
    "wrn16_4": {"depth": 10, "widen_factor": 1},
    "vit_tiny": {"embed_dim": 8, "depth": 2, "num_heads": 2},
    "timm": {"model_name": "test_resnet"},
}
# 16x16 images keep every resnet stage above 1x1, which the per-sample spatial norms need.
IMAGE_SHAPE = (1, 16, 16)
TOKEN_NORMS = ("layernorm", "rmsnorm", "powernorm", "unified_norm", "crmsnorm")
GROUPED = {"groupnorm", "ws_groupnorm", "bcn_ws", "evonorm_s0"}
INCOMPATIBLE = {
    (b, n) for b in ("mlp", "quadratic_mlp")
    for n in ("instancenorm", "frn", "evonorm_b0", "ws_batchnorm", "ws_groupnorm", "bcn_ws")
} | {("quadratic_mlp", "evonorm_s0")} | {(b, "selu") for b in TINY_BACKBONES if b != "mlp"} | {
    (b, "crmsnorm") for b in TINY_BACKBONES if b != "vit_tiny"
} | {("vit_tiny", n) for n in NORMS.names() if n not in TOKEN_NORMS} | {
    ("timm", n) for n in ("evonorm_b0", "evonorm_s0", "frn")}
# Norms whose config defaults are fractions of the run (see fit_run) take absolute values when built outside a run:
# the papers' (Hoffer et al.'s 128 samples, 4000 warm-up iterations).
OUTSIDE_A_RUN = {"ghost_batchnorm": {"virtual_batch_size": 128}, "powernorm": {"warmup_iters": 4000},
                 "unified_norm": {"warmup_iters": 4000}}
# timm's test_resnet downsamples 32x: its last maps are 1x1 (checked at build time, before any training).
TOO_SMALL = {("timm", "instancenorm")}


def test_every_backbone_has_a_tiny_config():
    assert set(TINY_BACKBONES) == set(BACKBONES.names())


@pytest.mark.parametrize("norm", NORMS.names())
@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
def test_backbone_norm_pair(backbone, norm):
    norm_cfg = {"name": norm, **({"groups": 2} if norm in GROUPED else {}), **OUTSIDE_A_RUN.get(norm, {})}
    cfg = {"name": backbone, **TINY_BACKBONES[backbone]}
    if (backbone, norm) in INCOMPATIBLE:
        with pytest.raises(UserError, match=f"norm={norm} with backbone={backbone} is not supported") as err:
            build_backbone(cfg, norm_cfg, IMAGE_SHAPE, 3)
        assert "\n" not in str(err.value)
        return
    if (backbone, norm) in TOO_SMALL:
        with pytest.raises(UserError, match=f"norm={norm} takes statistics over each sample's H x W"):
            build_backbone(cfg, norm_cfg, IMAGE_SHAPE, 3)
        return
    model = build_backbone(cfg, norm_cfg, IMAGE_SHAPE, 3)
    logits = model(torch.randn(2, *IMAGE_SHAPE))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable if p is not model.head.bias)


@pytest.mark.parametrize("norm", NORMS.names())
@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
def test_the_torch_free_traits_refuse_exactly_the_pairs_the_build_refuses(backbone, norm):
    """The config checks refuse a pair from the declared traits alone, before the model code loads."""
    if (backbone, norm) in INCOMPATIBLE:
        with pytest.raises(UserError, match=f"norm={norm} with backbone={backbone} is not supported"):
            check_backbone_norm(backbone, norm, Placement())
    else:
        check_backbone_norm(backbone, norm, Placement())


@pytest.mark.parametrize("norm", NORMS.names())
def test_the_batch_statistics_trait_is_what_the_built_norms_do(norm):
    backbone = {"crmsnorm": "vit_tiny", "selu": "mlp"}.get(norm, "convnet")
    norm_cfg = {"name": norm, **({"groups": 2} if norm in GROUPED else {}), **OUTSIDE_A_RUN.get(norm, {})}
    model = build_backbone({"name": backbone, **TINY_BACKBONES[backbone]}, norm_cfg, IMAGE_SHAPE, 3)
    assert any(uses_batch_statistics(m) for m in model.modules()) == NORM_TRAITS[norm].batch_statistics
    if NORM_TRAITS[norm].batch_statistics:
        with pytest.raises(UserError, match="data.batch_size=1 cannot be batch-normalized"):
            check_norm_batch(norm, 1)
    check_norm_batch(norm, 2)


def test_spatial_norm_on_a_backbone_that_shrinks_maps_to_1x1_is_one_line():
    with pytest.raises(UserError, match="norm=instancenorm takes statistics over each sample's H x W"):
        build_backbone({"name": "resnet18", "width": 4}, {"name": "instancenorm"}, (1, 8, 8), 3)


def test_timm_model_that_cannot_take_the_norm_is_one_line():
    with pytest.raises(UserError, match="backbone=timm model_name=test_vit with norm=batchnorm") as err:
        build_backbone({"name": "timm", "model_name": "test_vit"}, {"name": "batchnorm"}, (1, 16, 16), 3)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="backbone.model_name='nope' is invalid"):
        build_backbone({"name": "timm", "model_name": "nope"}, {"name": "batchnorm"}, (1, 16, 16), 3)


def test_weight_standardized_norms_reach_timm_convs():
    from regbench.norms import WSConv2d

    model = build_backbone({"name": "timm", "model_name": "test_resnet"}, {"name": "ws_batchnorm"}, (1, 16, 16), 3)
    assert any(isinstance(m, WSConv2d) for m in model.modules())


def shipped(group: str, name: str) -> dict:
    return yaml.safe_load((CONF / group / f"{name}.yaml").read_text())


# The norm each backbone is usually trained with, which must never be refused.
USUAL_NORM = {"vit_tiny": "layernorm"}


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_shipped_configs_are_refused_in_preflight_or_build(backbone):
    """With the shipped yaml defaults (norm.groups=32, full widths), every pair is either refused by
    dry_build_backbone, which the config check runs before the run directory exists, or builds for CIFAR-sized
    images: no pair passes the check and then fails once the run has started. (Forward/backward of every pair
    is test_backbone_norm_pair's job, on tiny widths.)"""
    cfg = shipped("backbone", backbone)
    refused = []
    for norm in NORMS.names():
        norm_cfg = shipped("norm", norm)
        try:
            dry_model = dry_build_backbone(cfg, norm_cfg, (3, 32, 32), 10)
        except UserError as err:
            assert "\n" not in str(err)
            refused.append(norm)
            continue
        model = build_backbone(cfg, norm_cfg, (3, 32, 32), 10)
        assert dry_model.num_features == model.num_features
    assert USUAL_NORM.get(backbone, "batchnorm") not in refused


def test_groups_that_do_not_fit_a_layer_are_refused_before_training_with_a_suggestion():
    with pytest.raises(UserError, match=r"^norm.groups=32 is invalid: must divide every layer's channel count "
                                        r"\(16 here\); try 16$"):
        dry_build_backbone(shipped("backbone", "wrn16_4"), shipped("norm", "groupnorm"), (3, 32, 32), 10)
    dry_build_backbone(shipped("backbone", "wrn16_4"), {**shipped("norm", "groupnorm"), "groups": 16}, (3, 32, 32), 10)


def test_bad_backbone_parameters_are_refused_before_training():
    with pytest.raises(UserError, match=r"backbone.depth=7 is invalid"):
        dry_build_backbone({**shipped("backbone", "wrn16_4"), "depth": 7}, shipped("norm", "batchnorm"), (3, 32, 32),
                           10)
    with pytest.raises(UserError, match=r"backbone.widths=\[-1\] is invalid"):
        dry_build_backbone({"name": "convnet", "widths": [-1]}, shipped("norm", "batchnorm"), (3, 32, 32), 10)


WIDTH_DECLARING = sorted(name for name, traits in BACKBONE_TRAITS.items() if traits.norm_widths is not None)


def test_only_timm_and_the_transformer_leave_their_norm_widths_to_the_built_model():
    assert set(BACKBONES.names()) - set(WIDTH_DECLARING) == {"timm", "vit_tiny"}


@pytest.mark.parametrize("backbone", WIDTH_DECLARING)
def test_the_declared_norm_widths_are_those_the_built_model_normalizes(backbone, monkeypatch):
    """The torch-free trait lists, in build order, every channel count the model gives its norm layers."""
    seen = []
    monkeypatch.setattr("regbench.norms.group.check_groups", lambda groups, width: seen.append(width))
    shipped_params = {k: v for k, v in shipped("backbone", backbone).items() if k != "name"}
    for params in (TINY_BACKBONES[backbone], shipped_params):
        seen.clear()
        dry_build_backbone({"name": backbone, **params}, {"name": "groupnorm", "groups": 1, "eps": 1e-5},
                           (3, 32, 32), 10)
        probe, *widths = seen  # norm_layer_from_config first checks the parameters on a probe of `groups` channels
        declared = BACKBONE_TRAITS[backbone].norm_widths(params)
        assert probe == 1 and list(dict.fromkeys(widths)) == list(dict.fromkeys(declared))


@pytest.mark.parametrize("norm", sorted(GROUPED))
@pytest.mark.parametrize("backbone", ["convnet", "resnet18", "wrn16_4"])
def test_a_group_count_that_misses_a_width_is_refused_torch_free_with_the_builds_line(backbone, norm):
    cfg = shipped("backbone", backbone)
    groups = BACKBONE_TRAITS[backbone].norm_widths(cfg)[0] + 1  # divides no width as small as the first
    norm_cfg = {**shipped("norm", norm), "groups": groups}
    with pytest.raises(UserError) as planned:
        check_norm_widths(cfg, norm_cfg)
    with pytest.raises(UserError) as built:
        dry_build_backbone(cfg, norm_cfg, (3, 32, 32), 10)
    assert str(planned.value) == str(built.value)
    assert str(planned.value).startswith(f"norm.groups={groups} is invalid: must divide every layer's channel count")
    check_norm_widths(cfg, {**norm_cfg, "groups": 1})
    check_norm_widths({"name": "timm", "model_name": "test_resnet"}, norm_cfg)  # its layers check when built
