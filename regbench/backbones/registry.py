"""The backbone registry (declared in regbench.specs.backbones): each entry builds a Classifier from the image
shape, class count, norm and conv layer, and declares the traits that decide which norms it can take."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


BACKBONE_TRAITS: dict[str, BackboneTraits] = {}


def register_backbone(name: str, **traits) -> Callable:
    def add(factory: Callable) -> Callable:
        BACKBONE_TRAITS[name] = BackboneTraits(**traits)
        return BACKBONES.register(name)(factory)
    return add
