"""The backbone registry's declared entries (timm's only imports timm when a run selects it)."""
from regbench.registry import OPTIONAL, Entry, Registry

BACKBONES = Registry("backbone", "backbone", context=("image_shape", "num_classes", "norm_layer", "conv_layer"),
                     entries={
    "convnet": Entry("regbench.backbones.convnet", {"widths": OPTIONAL}),
    "mlp": Entry("regbench.backbones.mlp", {"hidden": OPTIONAL}),
    "preact_resnet18": Entry("regbench.backbones.preact", {"width": OPTIONAL}),
    "quadratic_mlp": Entry("regbench.backbones.quadratic_mlp", {"width": OPTIONAL}),
    "resnet18": Entry("regbench.backbones.resnet", {"width": OPTIONAL}),
    "timm": Entry("regbench.backbones.timm_models", {"model_name": OPTIONAL, "model_kwargs": OPTIONAL}),
    "vit_tiny": Entry("regbench.backbones.vit", {
        "embed_dim": OPTIONAL, "depth": OPTIONAL, "num_heads": OPTIONAL, "mlp_ratio": OPTIONAL,
        "patch_size": OPTIONAL, "pool": OPTIONAL}),
    "wrn16_4": Entry("regbench.backbones.preact", {"depth": OPTIONAL, "widen_factor": OPTIONAL}),
})
