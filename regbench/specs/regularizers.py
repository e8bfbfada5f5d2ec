"""The regularizer registry's declared entries, and the one set of `exclusive` tags: regularizers that claim the
same tag cannot be stacked, and a tag outside this set is refused when a regularizer registers or is built, so a
misspelt tag can never silently drop an exclusion."""
from __future__ import annotations

from enum import Enum

from regbench.registry import OPTIONAL, REQUIRED, Entry, Registry


class Exclusion(str, Enum):
    """What a regularizer does that no other regularizer of the same stack may also do."""

    INPUT_MIXING = "input mixing"
    # Cutout and CutMix both drop a region of the image (CutMix fills it from a partner); stacked, the erased hole
    # would cover pasted pixels and CutMix's lambda would no longer be the visible pasted fraction.
    REGIONAL_DROPOUT = "regional dropout"
    # Techniques that act on the penultimate features (by wrapping the head).
    FEATURE_DROPOUT = "penultimate-feature dropout"
    LABEL_SMOOTHING = "label smoothing"
    NOISY_LABEL_LOSS = "noisy-label loss"
    WEIGHT_AVERAGING = "weight averaging"
    # Which network is evaluated: an average of the weights, or one of co-teaching's two networks.
    EVALUATED_NETWORK = "evaluated-network selection"


def check_exclusive(owner: str, tags: tuple[Exclusion, ...]) -> None:
    """Refuse (a programming error) `exclusive` tags that are not a tuple of Exclusion members."""
    if not isinstance(tags, tuple) or not all(isinstance(tag, Exclusion) for tag in tags):
        raise TypeError(f"{owner}.exclusive must be a tuple of Exclusion members "
                        f"({', '.join(tag.name for tag in Exclusion)}), not {tags!r}")


REGULARIZERS = Registry("regularizer", "regularizer", context=("seed", "label_noise", "dataset", "backbone"), entries={
    "alpha_dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED}),
    "batchformer": Entry("regbench.regularizers.batchformer", {
        "num_heads": REQUIRED, "ffn_dim": REQUIRED, "dropout": REQUIRED}),
    "coteaching": Entry("regbench.regularizers.noisy_labels", {
        "forget_rate": REQUIRED, "num_gradual": REQUIRED, "schedule": REQUIRED}),
    "cutmix": Entry("regbench.regularizers.mixing", {"alpha": REQUIRED, "prob": REQUIRED, "box": OPTIONAL}),
    "cutout": Entry("regbench.regularizers.erasing", {"length": REQUIRED, "n_holes": REQUIRED}),
    "dropblock": Entry("regbench.regularizers.dropblock", {
        "rate": REQUIRED, "block_size": REQUIRED, "stages": REQUIRED, "depth_rule": REQUIRED, "schedule": REQUIRED,
        "seed_region": REQUIRED, "share_mask_across_channels": REQUIRED}),
    "dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED}),
    "droppath": Entry("regbench.regularizers.dropout", {"drop_prob": REQUIRED}),
    "elr": Entry("regbench.regularizers.noisy_labels", {"lam": REQUIRED, "beta": REQUIRED}),
    "ema": Entry("regbench.regularizers.averaging", {
        "decay": REQUIRED, "warmup": OPTIONAL, "warmup_gamma": OPTIONAL, "warmup_power": OPTIONAL}),
    "ipr_pruning": Entry("regbench.regularizers.ipr_pruning", {
        "fractions": REQUIRED, "high_ipr": REQUIRED, "bins": REQUIRED}),
    "label_smoothing": Entry("regbench.regularizers.label_smoothing", {"eps": REQUIRED}),
    "mixup": Entry("regbench.regularizers.mixing", {"alpha": REQUIRED, "prob": REQUIRED}),
    "mixup_cutmix": Entry("regbench.regularizers.mixing", {
        "mixup_alpha": REQUIRED, "cutmix_alpha": REQUIRED, "prob": REQUIRED, "switch_prob": REQUIRED,
        "label_smoothing": REQUIRED}),
    "multisample_dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED, "num_samples": REQUIRED}),
    "nested_dropout": Entry("regbench.regularizers.nested_dropout", {"mu": REQUIRED, "sigma": REQUIRED}),
    "rankmixup": Entry("regbench.regularizers.rankmixup", {
        "variant": REQUIRED, "mixup_alpha": REQUIRED, "loss_weight": REQUIRED, "margin": REQUIRED,
        "num_mixes": REQUIRED, "mrl_mask": OPTIONAL}),
    "rcal": Entry("regbench.regularizers.rcal", {
        "representation_epochs": REQUIRED, "temperature": REQUIRED, "projection_dim": REQUIRED,
        "view_crop_padding": REQUIRED, "view_hflip": REQUIRED, "lof_neighbors": REQUIRED,
        "tail_count_fraction": REQUIRED, "calibration_neighbors": REQUIRED, "covariance_ridge": REQUIRED,
        "samples_per_class": REQUIRED, "sampled_loss_weight": REQUIRED, "individual_weight": REQUIRED}),
    "sade": Entry("regbench.regularizers.sade", {
        "inverse_lambda": REQUIRED, "test_imbalance_factor": REQUIRED, "aggregation_epochs": REQUIRED,
        "aggregation_lr": REQUIRED, "aggregation_batch_size": REQUIRED, "view_crop_padding": REQUIRED}),
    "swa": Entry("regbench.regularizers.averaging", {"start": REQUIRED}),
    "transmix": Entry("regbench.regularizers.transmix", {
        "alpha": REQUIRED, "prob": REQUIRED, "attention_weight": REQUIRED, "label_smoothing": REQUIRED,
        "box": OPTIONAL}),
    "weight_compander": Entry("regbench.regularizers.compander", {
        "function": OPTIONAL, "learnable": OPTIONAL, "a": OPTIONAL, "b": OPTIONAL}),
})
