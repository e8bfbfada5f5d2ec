"""The backbone registry (declared in regbench.specs.backbones): each entry builds a Classifier from the image
shape, class count, norm and conv layer, and declares the traits that decide which norms it can take."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from regbench.specs.backbones import BACKBONES


@dataclass(frozen=True)
class BackboneTraits:
    # Normalizes (B, N, D) tokens through `norm_layer.tokens` and honours the norm's placement keys.
    tokens: bool = False
    # Has convolutions over feature maps that weight standardization can act on.
    convs: bool = True
    # Its norms see feature maps with H x W > 1.
    spatial: bool = True
    # Lets a norm that includes its activation replace norm + ReLU.
    acting_norms: bool = True
    # How many convolutional stages the model built from these parameters (defaults filled in) has, each a list
    # of blocks with a `drop_block` slot (the model's `stage_blocks()`); None: no such stages (regularizer
    # dropblock refuses the backbone).
    conv_stages: Callable[[Mapping[str, Any]], int] | None = None


BACKBONE_TRAITS: dict[str, BackboneTraits] = {}


def register_backbone(name: str, **traits) -> Callable:
    def add(factory: Callable) -> Callable:
        BACKBONE_TRAITS[name] = BackboneTraits(**traits)
        return BACKBONES.register(name)(factory)
    return add
