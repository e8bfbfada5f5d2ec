"""The norm registry's declared entries, and each norm's traits: what a backbone and the config checks must know
about a norm beyond `norm(num_channels)`, declared here (torch-free) so that an unusable norm/backbone pair is
refused before the model code loads."""
from __future__ import annotations

import math
from dataclasses import dataclass

from regbench.errors import check, check_fraction, check_positive, check_positive_int, check_probability
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.values import at_least, below_one, boolean, running_momentum

# The rules of the parameters several norms share; a group count must also divide every layer's width
# (check_groups), which the backbone's parameters give (regbench.specs.compat.check_norm_widths).
EPS = {"eps": check_positive}
BN = {"momentum": running_momentum, **EPS}
GROUPS = {"groups": check_positive_int, **EPS}

NORMS = Registry("norm", "norm", context=("num_channels", "apply_act"), entries={
    "batchnorm": Entry("regbench.norms.batch", {"momentum": REQUIRED, "eps": REQUIRED}, BN),
    "bcn_ws": Entry("regbench.norms.bcn", {"groups": REQUIRED, "momentum": REQUIRED, "eps": REQUIRED},
                    {**GROUPS, "momentum": check_probability}),
    "bn_only": Entry("regbench.norms.batch", {"momentum": REQUIRED, "eps": REQUIRED}, BN),
    "crmsnorm": Entry("regbench.norms.rms", {"eps": REQUIRED}, EPS),
    "evonorm_b0": Entry("regbench.norms.evonorm", {"momentum": REQUIRED, "eps": REQUIRED}, BN),
    "evonorm_s0": Entry("regbench.norms.evonorm", {"groups": REQUIRED, "eps": REQUIRED}, GROUPS),
    "frn": Entry("regbench.norms.frn", {"eps": REQUIRED}, EPS),
    "ghost_batchnorm": Entry("regbench.norms.batch", {
        "virtual_batch_size": REQUIRED, "momentum": REQUIRED, "eps": REQUIRED}, BN),
    "groupnorm": Entry("regbench.norms.group", {"groups": REQUIRED, "eps": REQUIRED}, GROUPS),
    "instancenorm": Entry("regbench.norms.group", {"eps": REQUIRED}, EPS),
    "layernorm": Entry("regbench.norms.group", {"eps": REQUIRED}, EPS),
    "none": Entry("regbench.norms.identity", {}),
    "powernorm": Entry("regbench.norms.powernorm", {
        "alpha_fwd": REQUIRED, "alpha_bkw": REQUIRED, "eps": REQUIRED, "warmup_iters": REQUIRED},
        {"alpha_fwd": check_probability, "alpha_bkw": check_probability, **EPS}),
    "rmsnorm": Entry("regbench.norms.rms", {"eps": REQUIRED}, EPS),
    "selu": Entry("regbench.norms.selu", {"alpha_dropout": REQUIRED}, {"alpha_dropout": check_fraction}),
    "unified_norm": Entry("regbench.norms.unified", {
        "window": REQUIRED, "momentum": REQUIRED, "eps": REQUIRED, "warmup_iters": REQUIRED,
        "outlier_filtration": REQUIRED},
        {"window": at_least(2, "the number of recent iterations whose statistics are averaged"),
         "momentum": below_one, **EPS, "outlier_filtration": boolean}),
    "ws_batchnorm": Entry("regbench.norms.weight_standardized", {"momentum": REQUIRED, "eps": REQUIRED}, BN),
    "ws_groupnorm": Entry("regbench.norms.weight_standardized", {"groups": REQUIRED, "eps": REQUIRED}, GROUPS),
})


def check_groups(groups: int, num_channels: int) -> None:
    # Layers narrower than `groups` would silently get fewer groups in timm; say so loudly instead.
    check(num_channels % groups == 0, "groups", groups,
          f"must divide every layer's channel count ({num_channels} here); try {math.gcd(groups, num_channels)}")


@dataclass(frozen=True)
class NormTraits:
    # The factory takes `apply_act` and the norm is its own nonlinearity, so the backbone adds no ReLU.
    includes_activation: bool = False
    # Which conv the backbone builds (see regbench.norms.conv.get_conv).
    conv: str = "plain"
    # Statistics over H x W of each sample: meaningless on the (B, C, 1, 1) features of an MLP.
    spatial: bool = False
    # Has a builder for token features (..., D) (its module registers it), so transformers can select it.
    tokens: bool = False
    # The norm works on a transformer's residual stream compressed to embed_dim - 1 coordinates (CRMSNorm).
    compresses_stream: bool = False
    # The transformer placements the norm supports (regbench.specs.placement.PLACEMENTS; None: all).
    placements: tuple[str, ...] | None = None
    # Only these backbones can use the norm (None: any).
    backbones: tuple[str, ...] | None = None
    # Normalizes a training batch by that batch's own statistics: degenerate for a batch of one sample.
    batch_statistics: bool = False


NORM_TRAITS = {
    "batchnorm": NormTraits(batch_statistics=True),
    "bcn_ws": NormTraits(conv="ws"),
    "bn_only": NormTraits(batch_statistics=True),
    "crmsnorm": NormTraits(tokens=True, compresses_stream=True, placements=("pre",), backbones=("vit_tiny",)),
    "evonorm_b0": NormTraits(includes_activation=True, spatial=True, batch_statistics=True),
    "evonorm_s0": NormTraits(includes_activation=True),
    "frn": NormTraits(includes_activation=True, spatial=True),
    "ghost_batchnorm": NormTraits(batch_statistics=True),
    "groupnorm": NormTraits(),
    "instancenorm": NormTraits(spatial=True),
    "layernorm": NormTraits(tokens=True),
    "none": NormTraits(),
    "powernorm": NormTraits(tokens=True),
    "rmsnorm": NormTraits(tokens=True),
    "selu": NormTraits(includes_activation=True, backbones=("mlp",)),
    "unified_norm": NormTraits(tokens=True),
    "ws_batchnorm": NormTraits(conv="ws", batch_statistics=True),
    "ws_groupnorm": NormTraits(conv="ws"),
}
if sorted(NORM_TRAITS) != NORMS.names():
    raise ValueError(f"norm traits are declared for {sorted(NORM_TRAITS)} but the norms are {NORMS.names()}")
