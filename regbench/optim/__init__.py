"""Optimizers and learning-rate schedules by config name."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from regbench.specs.optim import OPTIMIZERS, SCHEDULES
from regbench.specs.run_checks import warmup_steps
from regbench.specs.values import boolean
from regbench.timm_import import import_timm


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full names of the parameters a submodule exempts with `no_weight_decay()` (timm's convention)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        if callable(getattr(module, "no_weight_decay", None)):
            names |= {f"{prefix}.{name}" if prefix else name for name in module.no_weight_decay()}
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and norm affines (1-d tensors) nor on the parameters a module names in
    `no_weight_decay()` (ViT's position embedding and class token), as timm's param_groups_weight_decay."""
    exempt = no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or name in exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@OPTIMIZERS.register("sgd")
def sgd(model: nn.Module, *, lr: float, weight_decay: float, momentum: float,
        nesterov: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum,
                           nesterov=nesterov and momentum > 0)


@OPTIMIZERS.register("adamw")
def adamw(model: nn.Module, *, lr: float, weight_decay: float,
          betas: tuple[float, float]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas))


@OPTIMIZERS.register("sgdp")
def sgdp(model: nn.Module, *, lr: float, weight_decay: float, momentum: float, nesterov: bool,
         delta: float, wd_ratio: float) -> torch.optim.Optimizer:
    SGDP = import_timm("timm.optim").SGDP  # timm takes seconds to import; only runs that use it pay

    return SGDP(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                delta=delta, wd_ratio=wd_ratio)


@OPTIMIZERS.register("adamp")
def adamp(model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
          delta: float, wd_ratio: float) -> torch.optim.Optimizer:
    AdamP = import_timm("timm.optim").AdamP  # timm takes seconds to import; only runs that use it pay

    return AdamP(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), delta=delta, wd_ratio=wd_ratio)


# Any optimizer's option: Normalize-and-Project after every step (regbench.optim.projection).
PROJECT = "project"


def projects_weights(cfg: Mapping[str, Any]) -> bool:
    """`optim.project`, checked; a config made in code without the key does not project."""
    value = cfg.get(PROJECT, False)
    boolean(f"optim.{PROJECT}", value)
    return value


def build_optimizer(cfg: Mapping[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer alone; `optim.project` is attached by the caller, who can show it the model's inputs."""
    params = {k: v for k, v in cfg.items() if k not in ("name", PROJECT)}
    return OPTIMIZERS.create(cfg["name"], params, model=model)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup from 0 to 1, then half a cosine from 1 to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def warmup_constant(step: int, warmup_steps: int, total_steps: int) -> float:
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def register_schedule(name: str, rule: Callable[[int, int, int], float]) -> None:
    """A per-step rule(step, warmup_steps, total_steps) -> learning-rate factor, with linear warmup."""
    def factory(*, warmup_epochs: float, steps_per_epoch: int, total_steps: int):
        warmup = warmup_steps(warmup_epochs, steps_per_epoch)
        return lambda step: rule(step, warmup, total_steps)

    SCHEDULES.register(name)(factory)


register_schedule("cosine", warmup_cosine)
register_schedule("constant", warmup_constant)


def build_schedule(cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    params = {k: v for k, v in cfg.items() if k != "name"}
    rule = SCHEDULES.create(cfg["name"], params, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, rule)

