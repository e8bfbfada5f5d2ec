"""Regularizers as composable hooks. Each technique's module is imported when a run first builds it
(REGULARIZERS.get): a run imports the techniques it uses and no other (noise_mask's policy imports torchvision)."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.errors import ParamError, UserError
from regbench.regularizers.base import MemoryBudget, Regularizer, TrainProgress, soft_cross_entropy
from regbench.specs.regularizers import REGULARIZERS, check_stackable


def create_regularizer(name: str, seed: int = 0, label_noise: Mapping[str, Any] | None = None,
                       **params: Any) -> Regularizer:
    """`label_noise` (the `data.noise` config) reaches the techniques whose defaults follow the data (the
    co-teaching forget rate is the noise rate)."""
    return REGULARIZERS.create(name, params, path=f"regularizer.{name}", seed=seed, label_noise=label_noise)


def build_regularizers(cfg: Mapping[str, Mapping[str, Any]], seed: int,
                       backbone: Mapping[str, Any] | None = None,
                       label_noise: Mapping[str, Any] | None = None,
                       run: Mapping[str, Any] | None = None) -> list[Regularizer]:
    """Build the `regularizer` mapping (name -> params, in list order) for data with `label_noise` (the
    `data.noise` config); refuse stacks that make no sense and, given the `backbone` config, techniques
    that cannot act on it and, given the whole `run` config, combinations with its norm or optimizer."""
    dataset = run["data"]["name"] if run is not None else None
    # The params mapping as it is: a config key named like a context argument is refused, not a TypeError.
    regularizers = [REGULARIZERS.create(name, params or {}, path=f"regularizer.{name}", seed=seed + i,
                                        label_noise=label_noise, dataset=dataset, backbone=backbone)
                    for i, (name, params) in enumerate(cfg.items())]
    check_stackable(cfg)
    if backbone is not None:
        for reg in regularizers:
            reg.check_backbone(backbone)
    if run is not None:
        for reg in regularizers:
            reg.check_stack(run, [other for other in regularizers if other is not reg])
    return regularizers


def check_regularizers_memory(regularizers: list[Regularizer], budget: MemoryBudget) -> None:
    for reg in regularizers:
        try:
            reg.check_memory(budget)
        except ParamError as err:
            raise UserError(str(err.at(f"regularizer.{reg.name}"))) from None


__all__ = ["REGULARIZERS", "MemoryBudget", "Regularizer", "TrainProgress", "build_regularizers",
           "check_regularizers_memory", "create_regularizer", "soft_cross_entropy"]
