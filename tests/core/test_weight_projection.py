"""Normalize-and-Project (optim.project=true): the weights that feed a normalization layer, read from a forward
pass; after every optimizer step each is scaled back to its initial norm, a target kept in the optimizer's state."""
import glob
import json
import os

import pytest
import torch
import torch.nn as nn
import yaml

from regbench.backbones import build_backbone, dry_build_backbone
from regbench.errors import UserError
from regbench.optim import build_optimizer
from regbench.optim.projection import (INITIAL_NORMS, attach_projection, check_projection_acts,
                                        modules_feeding_norms, weights_feeding_norms)

NORM_CONFIGS = {os.path.basename(path)[:-5]: yaml.safe_load(open(path))
                for path in sorted(glob.glob("conf/norm/*.yaml"))}
CONVNET = {"name": "convnet", "widths": [8, 16]}
WITHOUT_NORMALIZATION = {"none", "selu"}


def convnet(norm: str = "batchnorm") -> nn.Module:
    torch.manual_seed(0)
    params = dict(NORM_CONFIGS[norm], virtual_batch_size=4) if norm == "ghost_batchnorm" else NORM_CONFIGS[norm]
    if "groups" in params:
        params = dict(params, groups=4)
    if "warmup_iters" in params:
        params = dict(params, warmup_iters=10)
    return build_backbone(CONVNET, params, (3, 16, 16), 5)


def test_the_convolutions_before_batchnorm_are_found_and_the_head_is_not():
    model = convnet()
    found = modules_feeding_norms(model, torch.randn(8, 3, 16, 16))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert found == convs and len(convs) == 2
    assert model.head not in found


def test_a_pre_ln_transformer_has_no_weight_feeding_a_norm():
    model = build_backbone({"name": "vit_tiny", "embed_dim": 16, "depth": 2, "num_heads": 2, "patch_size": 4},
                           NORM_CONFIGS["layernorm"], (3, 16, 16), 5)
    assert modules_feeding_norms(model, torch.randn(2, 3, 16, 16)) == []


def fits_convnet(norm: str) -> bool:
    from regbench.specs.norms import NORM_TRAITS

    return NORM_TRAITS[norm].backbones is None or "convnet" in NORM_TRAITS[norm].backbones


@pytest.mark.parametrize("norm", [norm for norm in NORM_CONFIGS if fits_convnet(norm)])
def test_every_norm_that_normalizes_is_recognized(norm):
    model = convnet(norm)
    found = modules_feeding_norms(model.train(), torch.randn(8, 3, 16, 16))
    assert bool(found) == (norm not in WITHOUT_NORMALIZATION), norm


def test_after_each_step_the_weights_are_scaled_back_to_their_initial_norms():
    model, reference = convnet(), convnet()
    weights = weights_feeding_norms(model, torch.randn(8, 3, 16, 16))
    projected = [name for name, param in model.named_parameters() if any(param is w for w in weights)]
    initial = {name: float(param.detach().norm()) for name, param in model.named_parameters()
               if name in projected}
    optimizer = build_optimizer({"name": "sgd", "lr": 0.5, "weight_decay": 0.0, "momentum": 0.0}, model)
    attach_projection(optimizer, weights)
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 5
    for net in (model, reference):
        nn.functional.cross_entropy(net(images), labels).backward()
    optimizer.step()
    with torch.no_grad():  # the reference: a plain SGD step, then W * ||W_0|| / ||W|| for the projected weights
        for name, param in reference.named_parameters():
            param -= 0.5 * param.grad
            if name in projected:
                param *= initial[name] / param.norm()
    assert projected == ["features.0.weight", "features.3.weight"]  # the two convolutions
    for (name, param), ref in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(param, ref, msg=name)
    assert {name: float(param.detach().norm()) for name, param in model.named_parameters()
            if name in projected} == pytest.approx(initial, rel=1e-6)


def test_the_targets_are_saved_with_the_optimizer_and_a_resumed_run_projects_to_the_same_norms():
    model = convnet()
    weights = weights_feeding_norms(model, torch.randn(8, 3, 16, 16))
    cfg = {"name": "adamw", "lr": 0.1, "weight_decay": 0.0}
    optimizer = build_optimizer(cfg, model)
    attach_projection(optimizer, weights)
    initial = [float(w.detach().norm()) for w in weights]
    state = optimizer.state_dict()
    with torch.no_grad():
        for weight in weights:
            weight.mul_(3.0)  # what a resumed process would measure if it measured again
    resumed = build_optimizer(cfg, model)
    attach_projection(resumed, weights)
    resumed.load_state_dict(state)
    nn.functional.cross_entropy(model(torch.randn(8, 3, 16, 16)), torch.arange(8) % 5).backward()
    resumed.step()
    assert [float(w.detach().norm()) for w in weights] == pytest.approx(initial, rel=1e-6)
    assert any(norm is None for group in resumed.param_groups for norm in group[INITIAL_NORMS])  # biases, BN


def test_a_backbone_without_normalization_is_refused_before_training():
    model = dry_build_backbone(CONVNET, NORM_CONFIGS["none"], (3, 16, 16), 5)
    with pytest.raises(UserError, match=r"^optim.project=true: no weight of backbone=convnet with norm=none feeds"):
        check_projection_acts(model, (3, 16, 16), "convnet", "none")
    check_projection_acts(dry_build_backbone(CONVNET, NORM_CONFIGS["batchnorm"], (3, 16, 16), 5), (3, 16, 16),
                          "convnet", "batchnorm")


def test_the_cli_refuses_project_without_a_norm_and_a_bad_value_in_one_line(tmp_path, capsys):
    from regbench.run.cli import main as train_main

    for override, message in [
        ("norm=none", "optim.project=true: no weight of backbone=convnet with norm=none feeds a normalization layer"),
        ("optim.project=maybe", "optim.project='maybe' is invalid: must be true or false")]:
        args = ["optim.project=true", override] if override.startswith("norm") else [override]
        assert train_main([*args, "logger=none", f"hydra.run.dir={tmp_path / 'bad'}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_a_projected_run_trains_and_its_last_checkpoint_keeps_the_initial_norms(run_regbench, tmp_path):
    done = run_regbench("train", "optim.project=true", "trainer.max_epochs=2", "backbone.widths=[8,16]",
                        "logger=none", "hydra.run.dir=run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    projected = [norm for group in groups for norm in group[INITIAL_NORMS] if norm is not None]
    convs = [key for key in state if key.endswith("weight") and state[key].ndim == 4]
    assert len(projected) == len(convs) == 2
    assert sorted(float(state[key].norm()) for key in convs) == pytest.approx(sorted(projected), rel=1e-5)
