"""The backbone registry's declared entries (timm's only imports timm when a run selects it)."""
from regbench.errors import check_positive, check_positive_int
from regbench.registry import OPTIONAL, Entry, Registry
from regbench.specs.values import widths

BACKBONES = Registry("backbone", "backbone", context=("image_shape", "num_classes", "norm_layer", "conv_layer"),
                     entries={
    "convnet": Entry("regbench.backbones.convnet", {"widths": OPTIONAL}, {"widths": widths}),
    "mlp": Entry("regbench.backbones.mlp", {"hidden": OPTIONAL}, {"hidden": widths}),
    "preact_resnet18": Entry("regbench.backbones.preact", {"width": OPTIONAL}, {"width": check_positive_int}),
    "quadratic_mlp": Entry("regbench.backbones.quadratic_mlp", {"width": OPTIONAL}, {"width": check_positive_int}),
    "resnet18": Entry("regbench.backbones.resnet", {"width": OPTIONAL}, {"width": check_positive_int}),
    "timm": Entry("regbench.backbones.timm_models", {"model_name": OPTIONAL, "model_kwargs": OPTIONAL}),
    "vit_tiny": Entry("regbench.backbones.vit", {
        "embed_dim": OPTIONAL, "depth": OPTIONAL, "num_heads": OPTIONAL, "mlp_ratio": OPTIONAL,
        "patch_size": OPTIONAL, "pool": OPTIONAL},
        {"embed_dim": check_positive_int, "depth": check_positive_int, "num_heads": check_positive_int,
         "mlp_ratio": check_positive}),
    "wrn16_4": Entry("regbench.backbones.preact", {"depth": OPTIONAL, "widen_factor": OPTIONAL},
                     {"widen_factor": check_positive_int}),
})
