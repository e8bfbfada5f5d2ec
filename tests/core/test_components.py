"""Norms, backbones, calibration bins, schedules and the registry's error messages."""
from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from regbench.calibration.bins import ReliabilityBins, expected_calibration_error
from regbench.errors import UserError
from regbench.norms import get_norm
from regbench.optim import build_optimizer, param_groups, warmup_cosine
from regbench.regularizers import build_regularizers, create_regularizer

def test_batchnorm_normalizes_per_channel_in_train_and_uses_running_stats_in_eval():
    norm = get_norm("batchnorm", 3)
    x = torch.randn(16, 3, 5, 5) * 4 + 2
    out = norm(x)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    norm.eval()
    expected = (x - norm.running_mean.view(1, 3, 1, 1)) / torch.sqrt(norm.running_var.view(1, 3, 1, 1) + 1e-5)
    torch.testing.assert_close(norm(x), expected)


def test_layernorm_normalizes_each_sample_over_chw_and_groupnorm_each_group():
    x = torch.randn(4, 8, 3, 3) * 3 + 1
    out = get_norm("layernorm", 8)(x)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    grouped = get_norm("groupnorm", 8, groups=2)(x).view(4, 2, -1)
    torch.testing.assert_close(grouped.mean(-1), torch.zeros(4, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped.var(-1, unbiased=False), torch.ones(4, 2), atol=1e-3, rtol=0)


def test_bad_component_parameters_name_the_key_and_what_is_allowed():
    with pytest.raises(UserError, match=r"norm.groups=3 is invalid: must divide"):
        get_norm("groupnorm", 8, groups=3)
    with pytest.raises(UserError, match=r"norm.gropus is not a parameter of norm 'groupnorm'; allowed: groups, eps"):
        get_norm("groupnorm", 8, gropus=2)
    with pytest.raises(UserError, match=r"norm='ln' is not a known norm; allowed: batchnorm"):
        get_norm("ln", 8)
    with pytest.raises(UserError, match=r"both do input mixing"):
        build_regularizers({"mixup": {"alpha": 1.0, "prob": 1.0}, "cutmix": {"alpha": 1.0, "prob": 1.0}}, 0)
    with pytest.raises(UserError, match=r"regularizer.cutmix.alpha=-1 is invalid"):
        create_regularizer("cutmix", alpha=-1, prob=1.0)


def test_reliability_bins_give_torchmetrics_ece():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(500, 4, generator=gen) * 2, dim=-1)
    labels = torch.randint(0, 4, (500,), generator=gen)
    bins = ReliabilityBins(15)
    bins.update(probs[:200], labels[:200])
    bins.update(probs[200:], labels[200:])
    reference = MulticlassCalibrationError(num_classes=4, n_bins=15, norm="l1")(probs, labels)
    assert expected_calibration_error(bins.compute()) == pytest.approx(float(reference), abs=1e-6)
    assert sum(bins.compute()["bin_count"]) == 500


def test_warmup_cosine_schedule_and_weight_decay_groups():
    assert warmup_cosine(0, 4, 20) == pytest.approx(0.25)
    assert warmup_cosine(4, 4, 20) == pytest.approx(1.0)
    assert warmup_cosine(12, 4, 20) == pytest.approx(0.5)
    assert warmup_cosine(20, 4, 20) == pytest.approx(0.0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    decay, no_decay = param_groups(model, 0.1)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])] and len(no_decay["params"]) == 3
    optimizer = build_optimizer({"name": "adamw", "lr": 0.01, "weight_decay": 0.1, "betas": [0.9, 0.99]}, model)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1 and optimizer.param_groups[1]["weight_decay"] == 0.0


def test_vit_embeddings_get_no_weight_decay_as_in_timm():
    import timm

    from regbench.backbones import build_backbone

    vit = build_backbone({"name": "vit_tiny", "depth": 1, "pool": "cls"}, {"name": "layernorm"}, (1, 8, 8), 10)
    decay, no_decay = param_groups(vit, 0.05)
    exempt = {id(vit.pos_embed), id(vit.cls_token)}
    assert exempt <= {id(p) for p in no_decay["params"]} and not exempt & {id(p) for p in decay["params"]}
    # timm exempts the same names on its own ViT.
    assert {"pos_embed", "cls_token"} <= timm.create_model("vit_tiny_patch16_224", pretrained=False).no_weight_decay()
