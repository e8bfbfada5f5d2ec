"""Backbones that take their normalization from the norm factory. Importing registers every entry."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.backbones import convnet, mlp, resnet  # noqa: F401  (registration side effects)
from regbench.backbones.base import Classifier
from regbench.backbones.registry import BACKBONES
from regbench.norms import norm_layer_from_config


def build_backbone(cfg: Mapping[str, Any], norm_cfg: Mapping[str, Any], image_shape: tuple[int, int, int],
                   num_classes: int) -> Classifier:
    params = {k: v for k, v in cfg.items() if k != "name"}
    return BACKBONES.create(cfg["name"], params, image_shape=image_shape, num_classes=num_classes,
                            norm_layer=norm_layer_from_config(norm_cfg))


__all__ = ["BACKBONES", "Classifier", "build_backbone"]
