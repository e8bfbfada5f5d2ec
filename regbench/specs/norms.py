"""The norm registry's declared entries."""
from regbench.registry import OPTIONAL, Entry, Registry

NORMS = Registry("norm", "norm", context=("num_channels", "apply_act"), entries={
    "batchnorm": Entry("regbench.norms.batch", {"momentum": OPTIONAL, "eps": OPTIONAL}),
    "bcn_ws": Entry("regbench.norms.bcn", {"groups": OPTIONAL, "momentum": OPTIONAL, "eps": OPTIONAL}),
    "bn_only": Entry("regbench.norms.batch", {"momentum": OPTIONAL, "eps": OPTIONAL}),
    "crmsnorm": Entry("regbench.norms.rms", {"eps": OPTIONAL}),
    "evonorm_b0": Entry("regbench.norms.evonorm", {"momentum": OPTIONAL, "eps": OPTIONAL}),
    "evonorm_s0": Entry("regbench.norms.evonorm", {"groups": OPTIONAL, "eps": OPTIONAL}),
    "frn": Entry("regbench.norms.frn", {"eps": OPTIONAL}),
    "ghost_batchnorm": Entry("regbench.norms.batch", {
        "virtual_batch_size": OPTIONAL, "momentum": OPTIONAL, "eps": OPTIONAL}),
    "groupnorm": Entry("regbench.norms.group", {"groups": OPTIONAL, "eps": OPTIONAL}),
    "instancenorm": Entry("regbench.norms.group", {"eps": OPTIONAL}),
    "layernorm": Entry("regbench.norms.group", {"eps": OPTIONAL}),
    "none": Entry("regbench.norms.identity", {}),
    "powernorm": Entry("regbench.norms.powernorm", {
        "alpha_fwd": OPTIONAL, "alpha_bkw": OPTIONAL, "eps": OPTIONAL, "warmup_iters": OPTIONAL}),
    "rmsnorm": Entry("regbench.norms.rms", {"eps": OPTIONAL}),
    "selu": Entry("regbench.norms.selu", {"alpha_dropout": OPTIONAL}),
    "unified_norm": Entry("regbench.norms.unified", {
        "window": OPTIONAL, "momentum": OPTIONAL, "eps": OPTIONAL, "warmup_iters": OPTIONAL,
        "outlier_filtration": OPTIONAL}),
    "ws_batchnorm": Entry("regbench.norms.weight_standardized", {"momentum": OPTIONAL, "eps": OPTIONAL}),
    "ws_groupnorm": Entry("regbench.norms.weight_standardized", {"groups": OPTIONAL, "eps": OPTIONAL}),
})
