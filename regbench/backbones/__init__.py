"""Backbones that take their normalization from the norm factory. Each entry's module is imported when a run first
builds it (BACKBONES.get), so only a timm backbone imports timm."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from regbench.backbones.base import Classifier
from regbench.norms import NormLayer, norm_layer_from_config
from regbench.runshape import RunShape
from regbench.specs.backbones import BACKBONES
from regbench.specs.compat import check_backbone_norm
from regbench.specs.placement import split_norm_config


def norm_for_backbone(cfg: Mapping[str, Any], norm_cfg: Mapping[str, Any], run: RunShape | None = None) -> NormLayer:
    """The checked norm layer for backbone `cfg.name` (fitted to the `run`, see norm_layer_from_config); an
    incompatible pair is one UserError line."""
    BACKBONES.entry(cfg["name"])
    norm, _, placement = split_norm_config(norm_cfg)
    check_backbone_norm(cfg["name"], norm, placement)
    return norm_layer_from_config(norm_cfg, run)


def _build(cfg: Mapping[str, Any], norm_layer: NormLayer, image_shape: tuple[int, int, int],
           num_classes: int) -> Classifier:
    params = {k: v for k, v in cfg.items() if k != "name"}
    model = BACKBONES.create(cfg["name"], params, image_shape=image_shape, num_classes=num_classes,
                             norm_layer=norm_layer, conv_layer=norm_layer.conv_layer)
    norm_layer.prepare(model)
    if norm_layer.traits.spatial:
        check_feature_maps(model, image_shape)
    return model


def build_backbone(cfg: Mapping[str, Any], norm_cfg: Mapping[str, Any], image_shape: tuple[int, int, int],
                   num_classes: int, run: RunShape | None = None) -> Classifier:
    return _build(cfg, norm_for_backbone(cfg, norm_cfg, run), image_shape, num_classes)


def dry_build_backbone(cfg: Mapping[str, Any], norm_cfg: Mapping[str, Any], image_shape: tuple[int, int, int],
                       num_classes: int, run: RunShape | None = None) -> Classifier:
    """build_backbone on the meta device (no memory, no initialization work), for the images the dataset's facts
    declare: a bad backbone parameter, a norm parameter that does not fit one of its layers (e.g. norm.groups=32
    on wrn16_4's 16-channel stem) or a patch size that does not divide the images fails with the config checks,
    before the run directory exists; the config checks also read its feature width."""
    norm_layer = norm_for_backbone(cfg, norm_cfg, run)
    with torch.device("meta"):
        return _build(cfg, norm_layer, image_shape, num_classes)


def check_feature_maps(model: Classifier, image_shape: tuple[int, int, int]) -> None:
    """One eval-mode pass (no statistics change), so a spatial norm on a 1x1 map fails before training."""
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *image_shape))
    model.train()


__all__ = ["BACKBONES", "Classifier", "build_backbone", "dry_build_backbone", "norm_for_backbone"]
