"""Normalize-and-Project (NaP; Lyle et al., "Normalization and effective learning rates in reinforcement
learning", 2024): after every optimizer step, each weight that feeds a normalization layer is scaled back to its
norm at initialization. The normalization makes the network invariant to that weight's scale, so the projection
changes nothing the network computes, but it stops the weight norm from growing, which would otherwise shrink the
effective learning rate (the step size relative to the weight) as training goes on.

Which weights feed a normalization layer is read from one forward pass: a conv or linear layer whose output tensor
is itself the input of a normalization layer. A weight whose output is added to a residual stream first (a Pre-LN
transformer's projections) does not feed the norm directly and is left alone.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from regbench.errors import UserError

from regbench.norms.bcn import BatchChannelNorm, EstimatedBatchNorm
from regbench.norms.evonorm import EvoNormBase
from regbench.norms.frn import FilterResponseNorm
from regbench.norms.powernorm import PowerNorm
from regbench.norms.rms import CompressedRMSNorm, RMSNormChannels
from regbench.norms.unified import UnifiedNorm

# Every layer regbench's norms build that divides its input by a statistic of it (norm=none and norm=selu build
# none); tests/core/test_weight_projection.py checks that every registered norm is covered.
NORMALIZATION_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm, BatchChannelNorm,
                        CompressedRMSNorm, EstimatedBatchNorm, EvoNormBase, FilterResponseNorm, PowerNorm,
                        RMSNormChannels, UnifiedNorm)
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Where the projection targets live: a list beside each param group's params (None: not projected), so they are
# saved in the optimizer's state dict and a resumed run projects to the same norms.
INITIAL_NORMS = "initial_norms"


def modules_feeding_norms(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The conv and linear layers of `model` whose output goes straight into a normalization layer, in the order
    `model(example)` runs them. The caller chooses the mode; the model's parameters and state are not changed."""
    produced_by: dict[int, tuple[torch.Tensor, nn.Module]] = {}  # the tensor is kept so its id is not reused
    feeding: dict[int, nn.Module] = {}

    def record_output(module, inputs, output):
        if isinstance(output, torch.Tensor):
            produced_by[id(output)] = (output, module)

    def check_input(module, inputs):
        if inputs and isinstance(inputs[0], torch.Tensor) and id(inputs[0]) in produced_by:
            source = produced_by[id(inputs[0])][1]
            feeding.setdefault(id(source), source)

    handles = [m.register_forward_hook(record_output) for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    handles += [m.register_forward_pre_hook(check_input) for m in model.modules()
                if isinstance(m, NORMALIZATION_LAYERS)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return list(feeding.values())


def weights_feeding_norms(model: nn.Module, example: torch.Tensor) -> list[nn.Parameter]:
    """The weights to project, found on a copy of `model` in training mode (so every network of a co-teaching
    pair runs) with its random streams untouched."""
    tracer = copy.deepcopy(model).train()
    with torch.random.fork_rng(devices=[example.device] if example.device.type == "cuda" else []):
        found = modules_feeding_norms(tracer, example)
    names = {id(module): name for name, module in tracer.named_modules()}
    originals = dict(model.named_modules())
    return [originals[names[id(module)]].weight for module in found]


def attach_projection(optimizer: torch.optim.Optimizer, weights: list[nn.Parameter]) -> None:
    """Project `weights` back to their current norms after every step of `optimizer`."""
    chosen = {id(weight) for weight in weights}
    for group in optimizer.param_groups:
        group[INITIAL_NORMS] = [float(p.detach().norm()) if id(p) in chosen else None for p in group["params"]]
    optimizer.register_step_post_hook(lambda opt, args, kwargs: project_to_initial_norms(opt))


@torch.no_grad()
def project_to_initial_norms(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        pairs = [(p, norm) for p, norm in zip(group["params"], group[INITIAL_NORMS]) if norm is not None]
        if pairs:
            params = [p for p, _ in pairs]
            current = torch._foreach_norm(params)
            torch._foreach_mul_(params, [norm / now for (_, norm), now in zip(pairs, current)])


def check_projection_acts(model: nn.Module, image_shape: tuple[int, int, int], backbone: str, norm: str) -> None:
    """Refuse optim.project=true where no weight feeds a normalization layer: it would do nothing. `model` may be
    built on the meta device (the config checks' dry build); it runs in eval mode, which changes no state."""
    model.eval()
    example = torch.empty(2, *image_shape, device=next(model.parameters()).device)
    if not modules_feeding_norms(model, example):
        raise UserError(f"optim.project=true: no weight of backbone={backbone} with norm={norm} feeds a "
                        f"normalization layer, so Normalize-and-Project has nothing to project; use a norm such as "
                        f"batchnorm or groupnorm after the convolutions, or optim.project=false")
