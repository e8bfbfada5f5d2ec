"""The backbone registry's declared entries (timm's only imports timm when a run selects it), and each backbone's
traits, which decide the norms it can take (torch-free, so a pair that cannot work is refused before the model code
loads)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from regbench.errors import check, check_positive, check_positive_int
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.values import is_int, one_of, widths

# How a vision transformer pools its tokens for the head: their mean, or its class token.
VIT_POOLS = ("mean", "cls")


def wrn_depth(key: str, value: Any) -> None:
    check(is_int(value) and value >= 10 and (value - 4) % 6 == 0, key, value,
          "must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...)")


BACKBONES = Registry("backbone", "backbone", context=("image_shape", "num_classes", "norm_layer", "conv_layer"),
                     entries={
    "convnet": Entry("regbench.backbones.convnet", {"widths": REQUIRED}, {"widths": widths}),
    "mlp": Entry("regbench.backbones.mlp", {"hidden": REQUIRED}, {"hidden": widths}),
    "preact_resnet18": Entry("regbench.backbones.preact", {"width": REQUIRED}, {"width": check_positive_int}),
    "quadratic_mlp": Entry("regbench.backbones.quadratic_mlp", {"width": REQUIRED}, {"width": check_positive_int}),
    "resnet18": Entry("regbench.backbones.resnet", {"width": REQUIRED}, {"width": check_positive_int}),
    "timm": Entry("regbench.backbones.timm_models", {"model_name": REQUIRED, "model_kwargs": REQUIRED}),
    "vit_tiny": Entry("regbench.backbones.vit", {
        "embed_dim": REQUIRED, "depth": REQUIRED, "num_heads": REQUIRED, "mlp_ratio": REQUIRED,
        "patch_size": REQUIRED, "pool": REQUIRED},
        {"embed_dim": check_positive_int, "depth": check_positive_int, "num_heads": check_positive_int,
         "mlp_ratio": check_positive, "pool": one_of(VIT_POOLS)}),
    "wrn16_4": Entry("regbench.backbones.preact", {"depth": REQUIRED, "widen_factor": REQUIRED},
                     {"depth": wrn_depth, "widen_factor": check_positive_int}),
})


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
    # The channel counts the model built from these parameters passes to its norm layers, in build order; None:
    # only the built model knows them (timm's models; a transformer takes no grouped norm).
    norm_widths: Callable[[Mapping[str, Any]], tuple[int, ...]] | None = None


def doubling(params: Mapping[str, Any]) -> tuple[int, ...]:
    """A four-stage ResNet's widths: the stem's, then doubled per stage."""
    return tuple(params["width"] * 2 ** stage for stage in range(4))


BACKBONE_TRAITS = {
    "convnet": BackboneTraits(conv_stages=lambda params: len(params["widths"]),
                              norm_widths=lambda params: tuple(params["widths"])),
    "mlp": BackboneTraits(convs=False, spatial=False, norm_widths=lambda params: tuple(params["hidden"])),
    "preact_resnet18": BackboneTraits(conv_stages=lambda params: 4, norm_widths=doubling),
    "quadratic_mlp": BackboneTraits(convs=False, spatial=False, acting_norms=False,
                                    norm_widths=lambda params: (params["width"],)),
    "resnet18": BackboneTraits(conv_stages=lambda params: 4, norm_widths=doubling),
    "timm": BackboneTraits(acting_norms=False),
    "vit_tiny": BackboneTraits(tokens=True, convs=False, spatial=False, acting_norms=False),
    # The first block normalizes the 16-channel stem output.
    "wrn16_4": BackboneTraits(conv_stages=lambda params: 3,
                              norm_widths=lambda params: (16, *(w * params["widen_factor"] for w in (16, 32, 64)))),
}
if sorted(BACKBONE_TRAITS) != BACKBONES.names():
    raise ValueError(f"backbone traits are declared for {sorted(BACKBONE_TRAITS)} but the backbones are "
                     f"{BACKBONES.names()}")
