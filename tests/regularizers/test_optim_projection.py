"""sgdp / adamp (Heo et al., ICLR 2021) built from their configs: timm's optimizers, stepping, bad values."""
import copy
import re

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from timm.optim import SGDP, AdamP

from regbench.errors import UserError
from regbench.optim import build_optimizer

CONF = "conf/optim/{}.yaml"


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3))


def loss(model: nn.Module) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return nn.functional.cross_entropy(model(torch.randn(8, 1, 6, 6, generator=gen)), torch.arange(8) % 3)


@pytest.mark.parametrize("name, timm_class", [("sgdp", SGDP), ("adamp", AdamP)])
def test_config_builds_timms_optimizer_and_steps_like_it(name, timm_class):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF.format(name)))
    model = net()
    reference_model = copy.deepcopy(model)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, timm_class)
    assert optimizer.defaults["delta"] == 0.1 and optimizer.defaults["wd_ratio"] == 0.1

    # Reference: timm's optimizer on the same model, weight decay only on >= 2-d weights.
    params = {k: v for k, v in cfg.items() if k not in ("name", "lr", "weight_decay", "project")}
    if "betas" in params:
        params["betas"] = tuple(params["betas"])
    decay = [p for p in reference_model.parameters() if p.ndim > 1]
    no_decay = [p for p in reference_model.parameters() if p.ndim <= 1]
    reference = timm_class([{"params": decay, "weight_decay": cfg["weight_decay"]},
                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"], **params)
    for opt, m in ((optimizer, model), (reference, reference_model)):
        for _ in range(2):
            opt.zero_grad()
            loss(m).backward()
            opt.step()
    before = net()
    for ours, theirs, start in zip(model.parameters(), reference_model.parameters(), before.parameters()):
        torch.testing.assert_close(ours, theirs)
        assert not torch.equal(ours, start)


@pytest.mark.parametrize("cfg, message", [
    ({"name": "adamp", "lr": 1e-3, "weight_decay": 0.05, "delta": -0.1}, "optim.delta=-0.1 is invalid"),
    ({"name": "adamp", "lr": 1e-3, "weight_decay": 0.05, "betas": [0.9]}, "optim.betas=[0.9] is invalid"),
    ({"name": "sgdp", "lr": 0.05, "weight_decay": 5e-4, "wd_ratio": 2}, "optim.wd_ratio=2 is invalid"),
    ({"name": "sgdp", "lr": 0.05, "weight_decay": 5e-4, "momentum": 1.5}, "optim.momentum=1.5 is invalid"),
    ({"name": "sgdp", "lr": 0.05, "weight_decay": 5e-4, "eps": 1.0}, "optim.eps is not a parameter"),
])
def test_bad_values_fail_with_one_line(cfg, message):
    with pytest.raises(UserError, match=re.escape(message)) as err:
        build_optimizer(cfg, net())
    assert "\n" not in str(err.value)
