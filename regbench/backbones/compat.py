"""Which norm goes with which backbone: every refused pair is one line naming both and what would work."""
from __future__ import annotations

from regbench.backbones.registry import BACKBONE_TRAITS
from regbench.errors import UserError
from regbench.norms import NORM_TRAITS, NormLayer


def _names(predicate) -> str:
    return ", ".join(name for name, traits in sorted(NORM_TRAITS.items()) if predicate(traits))


def check_backbone_norm(backbone: str, norm: NormLayer) -> None:
    backbone_traits, norm_traits = BACKBONE_TRAITS[backbone], norm.traits
    pair = f"norm={norm.name} with backbone={backbone}"
    if norm_traits.backbones is not None and backbone not in norm_traits.backbones:
        raise UserError(f"{pair} is not supported: norm={norm.name} is only for backbone="
                        f"{'|'.join(norm_traits.backbones)}")
    if backbone_traits.tokens and norm_traits.tokens is None:
        raise UserError(f"{pair} is not supported: a transformer normalizes tokens; allowed norms: "
                        f"{_names(lambda t: t.tokens is not None)}")
    if not backbone_traits.tokens and not norm.placement.is_default:
        setting = (f"norm.placement={norm.placement.kind}" if norm.placement.kind != "pre"
                   else "norm.depth_scaling=true")
        raise UserError(f"{setting} only applies to transformer backbones (backbone=vit_tiny); backbone={backbone} "
                        f"has fixed norm positions, so drop it")
    if norm_traits.conv != "plain" and not backbone_traits.convs:
        raise UserError(f"{pair} is not supported: the norm standardizes conv weights and backbone={backbone} "
                        f"has no convolutions; use norm=batchnorm or norm=groupnorm")
    if norm_traits.spatial and not backbone_traits.spatial:
        raise UserError(f"{pair} is not supported: the norm takes statistics over each sample's H x W, which "
                        f"backbone={backbone} does not have; try norm=layernorm or norm=groupnorm")
    if norm_traits.includes_activation and not backbone_traits.acting_norms:
        raise UserError(f"{pair} is not supported: the norm replaces norm + activation, which backbone="
                        f"{backbone} cannot switch; use a convnet/resnet backbone")
