"""Which norm goes with which backbone and batch size: every refused choice is one line naming it and what would
work."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.errors import ParamError, UserError
from regbench.specs.backbones import BACKBONE_TRAITS
from regbench.specs.norms import NORM_TRAITS, NORMS, check_groups
from regbench.specs.placement import Placement


def _names(predicate) -> str:
    return ", ".join(name for name, traits in sorted(NORM_TRAITS.items()) if predicate(traits))


def check_backbone_norm(backbone: str, norm: str, placement: Placement) -> None:
    backbone_traits, norm_traits = BACKBONE_TRAITS[backbone], NORM_TRAITS[norm]
    pair = f"norm={norm} with backbone={backbone}"
    if norm_traits.backbones is not None and backbone not in norm_traits.backbones:
        raise UserError(f"{pair} is not supported: norm={norm} is only for backbone="
                        f"{'|'.join(norm_traits.backbones)}")
    if backbone_traits.tokens and not norm_traits.tokens:
        raise UserError(f"{pair} is not supported: a transformer normalizes tokens; allowed norms: "
                        f"{_names(lambda t: t.tokens)}")
    if not backbone_traits.tokens and not placement.is_default:
        setting = (f"norm.placement={placement.kind}" if placement.kind != "pre"
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


def check_norm_widths(backbone: Mapping[str, Any], norm: Mapping[str, Any]) -> None:
    """A grouped norm's group count against every width the backbone normalizes, as its layers check it when
    built; a timm model's widths are checked there alone."""
    widths = BACKBONE_TRAITS[backbone["name"]].norm_widths
    if widths is None or "groups" not in NORMS.entry(norm["name"]).params:
        return
    try:
        for width in widths(backbone):
            check_groups(norm["groups"], width)
    except ParamError as err:
        raise UserError(str(err.at("norm"))) from None


# Also said when a timm model's own batch norms meet a batch of one (regbench.run.train).
BATCH_OF_ONE = ("data.batch_size=1 cannot be batch-normalized in training; use a larger batch size or a "
                "batch-independent norm (norm=groupnorm, layernorm, rmsnorm, evonorm_s0, frn or bcn_ws)")


def check_norm_batch(norm: str, batch_size: int) -> None:
    if batch_size == 1 and NORM_TRAITS[norm].batch_statistics:
        raise UserError(BATCH_OF_ONE)
