"""The norm registry's declared entries."""
from regbench.errors import check_fraction, check_positive, check_positive_int, check_probability
from regbench.registry import OPTIONAL, Entry, Registry
from regbench.specs.values import at_least, below_one, boolean, running_momentum

# The rules of the parameters several norms share; a group count must also divide every layer's width, which
# only the built layer knows.
EPS = {"eps": check_positive}
BN = {"momentum": running_momentum, **EPS}
GROUPS = {"groups": check_positive_int, **EPS}

NORMS = Registry("norm", "norm", context=("num_channels", "apply_act"), entries={
    "batchnorm": Entry("regbench.norms.batch", {"momentum": OPTIONAL, "eps": OPTIONAL}, BN),
    "bcn_ws": Entry("regbench.norms.bcn", {"groups": OPTIONAL, "momentum": OPTIONAL, "eps": OPTIONAL},
                    {**GROUPS, "momentum": check_probability}),
    "bn_only": Entry("regbench.norms.batch", {"momentum": OPTIONAL, "eps": OPTIONAL}, BN),
    "crmsnorm": Entry("regbench.norms.rms", {"eps": OPTIONAL}, EPS),
    "evonorm_b0": Entry("regbench.norms.evonorm", {"momentum": OPTIONAL, "eps": OPTIONAL}, BN),
    "evonorm_s0": Entry("regbench.norms.evonorm", {"groups": OPTIONAL, "eps": OPTIONAL}, GROUPS),
    "frn": Entry("regbench.norms.frn", {"eps": OPTIONAL}, EPS),
    "ghost_batchnorm": Entry("regbench.norms.batch", {
        "virtual_batch_size": OPTIONAL, "momentum": OPTIONAL, "eps": OPTIONAL}, BN),
    "groupnorm": Entry("regbench.norms.group", {"groups": OPTIONAL, "eps": OPTIONAL}, GROUPS),
    "instancenorm": Entry("regbench.norms.group", {"eps": OPTIONAL}, EPS),
    "layernorm": Entry("regbench.norms.group", {"eps": OPTIONAL}, EPS),
    "none": Entry("regbench.norms.identity", {}),
    "powernorm": Entry("regbench.norms.powernorm", {
        "alpha_fwd": OPTIONAL, "alpha_bkw": OPTIONAL, "eps": OPTIONAL, "warmup_iters": OPTIONAL},
        {"alpha_fwd": check_probability, "alpha_bkw": check_probability, **EPS}),
    "rmsnorm": Entry("regbench.norms.rms", {"eps": OPTIONAL}, EPS),
    "selu": Entry("regbench.norms.selu", {"alpha_dropout": OPTIONAL}, {"alpha_dropout": check_fraction}),
    "unified_norm": Entry("regbench.norms.unified", {
        "window": OPTIONAL, "momentum": OPTIONAL, "eps": OPTIONAL, "warmup_iters": OPTIONAL,
        "outlier_filtration": OPTIONAL},
        {"window": at_least(2, "the number of recent iterations whose statistics are averaged"),
         "momentum": below_one, **EPS, "outlier_filtration": boolean}),
    "ws_batchnorm": Entry("regbench.norms.weight_standardized", {"momentum": OPTIONAL, "eps": OPTIONAL}, BN),
    "ws_groupnorm": Entry("regbench.norms.weight_standardized", {"groups": OPTIONAL, "eps": OPTIONAL}, GROUPS),
})
