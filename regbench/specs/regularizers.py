"""The regularizer registry's declared entries, and the one set of `exclusive` tags: regularizers that claim the
same tag cannot be stacked, and a tag outside this set is refused when a regularizer registers or is built, so a
misspelt tag can never silently drop an exclusion."""
from __future__ import annotations

from enum import Enum
from typing import Mapping

from regbench.errors import (check, check_fraction, check_non_negative, check_positive, check_positive_int,
                             check_probability)
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.evaluation import TENSOR_DATASETS
from regbench.specs.values import below_one, boolean, one_of, running_momentum, smoothing


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
    # A trained out-of-distribution detector whose own score eval=[ood] reads as `method` (one per run).
    OOD_METHOD = "trained OOD score"


def check_exclusive(owner: str, tags: tuple[Exclusion, ...]) -> None:
    """Refuse (a programming error) `exclusive` tags that are not a tuple of Exclusion members."""
    if not isinstance(tags, tuple) or not all(isinstance(tag, Exclusion) for tag in tags):
        raise TypeError(f"{owner}.exclusive must be a tuple of Exclusion members "
                        f"({', '.join(tag.name for tag in Exclusion)}), not {tags!r}")


# AbeT's logit numerators h(z): GODIN's cosine similarity to each class vector (the paper's), or the inner product
# w . z + b of the backbone's linear head (GODIN's h^I).
ABET_NUMERATORS = ("cosine", "inner")


def abet_numerator(key: str, value) -> None:
    check(value in ABET_NUMERATORS, key, value, f"must be one of {', '.join(ABET_NUMERATORS)}")


# Rules shared by the mixing regularizers: Beta(alpha, alpha) needs alpha > 0; each batch is mixed with `prob`.
MIXING = {"alpha": check_positive, "prob": check_probability}

# MixOE's outlier sets: the datasets held in memory as uint8 images, as for eval=[ood]; its two ways to mix.
MIXOE_OUTLIERS = TENSOR_DATASETS
MIXOE_MODES = ("mixup", "cutmix")

REGULARIZERS = Registry("regularizer", "regularizer", context=("seed", "label_noise", "dataset", "backbone"), entries={
    "abet": Entry("regbench.regularizers.abet", {"numerator": REQUIRED}, {"numerator": abet_numerator}),
    "alpha_dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED}, {"rate": below_one}),
    "batchformer": Entry("regbench.regularizers.batchformer", {
        "num_heads": REQUIRED, "ffn_dim": REQUIRED, "dropout": REQUIRED},
        {"num_heads": check_positive_int, "dropout": below_one}),
    "class_gmm": Entry("regbench.regularizers.class_gmm", {
        "components": REQUIRED, "attribute_dim": REQUIRED, "bottleneck_dim": REQUIRED, "covariance": REQUIRED,
        "weight": REQUIRED, "center_weight": REQUIRED, "weight_momentum": REQUIRED, "covariance_ridge": REQUIRED},
        {"components": check_positive_int, "attribute_dim": check_positive_int, "bottleneck_dim": check_positive_int,
         "weight": check_non_negative, "center_weight": check_non_negative, "weight_momentum": running_momentum,
         "covariance_ridge": check_non_negative}),
    "coteaching": Entry("regbench.regularizers.noisy_labels", {
        "forget_rate": REQUIRED, "num_gradual": REQUIRED, "schedule": REQUIRED}, {"num_gradual": check_positive_int}),
    "cutmix": Entry("regbench.regularizers.mixing", {"alpha": REQUIRED, "prob": REQUIRED, "box": REQUIRED}, MIXING),
    "cutout": Entry("regbench.regularizers.erasing", {"length": REQUIRED, "n_holes": REQUIRED},
                    {"n_holes": check_positive_int}),
    "dropblock": Entry("regbench.regularizers.dropblock", {
        "rate": REQUIRED, "block_size": REQUIRED, "stages": REQUIRED, "depth_rule": REQUIRED, "schedule": REQUIRED,
        "seed_region": REQUIRED, "share_mask_across_channels": REQUIRED},
        {"block_size": check_positive_int, "share_mask_across_channels": boolean}),
    "dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED}, {"rate": below_one}),
    "droppath": Entry("regbench.regularizers.dropout", {"drop_prob": REQUIRED}, {"drop_prob": below_one}),
    "elr": Entry("regbench.regularizers.noisy_labels", {"lam": REQUIRED, "beta": REQUIRED},
                 {"lam": check_non_negative, "beta": below_one}),
    "ema": Entry("regbench.regularizers.averaging", {
        "decay": REQUIRED, "warmup": REQUIRED, "warmup_gamma": REQUIRED, "warmup_power": REQUIRED},
        {"decay": below_one, "warmup": boolean, "warmup_gamma": check_positive, "warmup_power": check_positive}),
    "ipr_pruning": Entry("regbench.regularizers.ipr_pruning", {
        "fractions": REQUIRED, "high_ipr": REQUIRED, "bins": REQUIRED}),
    "label_smoothing": Entry("regbench.regularizers.label_smoothing", {"eps": REQUIRED}, {"eps": smoothing}),
    "mixoe": Entry("regbench.regularizers.mixoe", {
        "outliers": REQUIRED, "mode": REQUIRED, "alpha": REQUIRED, "beta": REQUIRED},
        {"outliers": one_of(MIXOE_OUTLIERS), "mode": one_of(MIXOE_MODES), "alpha": check_positive,
         "beta": check_non_negative}),
    "mixup": Entry("regbench.regularizers.mixing", {"alpha": REQUIRED, "prob": REQUIRED}, MIXING),
    "mixup_cutmix": Entry("regbench.regularizers.mixing", {
        "mixup_alpha": REQUIRED, "cutmix_alpha": REQUIRED, "prob": REQUIRED, "switch_prob": REQUIRED,
        "label_smoothing": REQUIRED},
        {"mixup_alpha": check_positive, "cutmix_alpha": check_positive, "prob": check_probability,
         "switch_prob": check_probability, "label_smoothing": smoothing}),
    "multisample_dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED, "num_samples": REQUIRED},
                                 {"rate": below_one, "num_samples": check_positive_int}),
    "nested_dropout": Entry("regbench.regularizers.nested_dropout", {"mu": REQUIRED, "sigma": REQUIRED},
                            {"mu": check_non_negative, "sigma": check_positive}),
    "noise_mask": Entry("regbench.regularizers.noise_mask", {
        "pretrain_epochs": REQUIRED, "grid": REQUIRED, "blur_sigma": REQUIRED, "policy_width": REQUIRED,
        "policy_lr": REQUIRED, "baseline": REQUIRED, "prior_weight": REQUIRED, "prior_momentum": REQUIRED},
        {"grid": check_positive_int, "policy_width": check_positive_int, "policy_lr": check_positive,
         "prior_weight": check_fraction, "prior_momentum": check_fraction}),
    "palm": Entry("regbench.regularizers.palm", {
        "prototypes": REQUIRED, "top_k": REQUIRED, "embedding_dim": REQUIRED, "temperature": REQUIRED,
        "prototype_temperature": REQUIRED, "momentum": REQUIRED, "sinkhorn_epsilon": REQUIRED,
        "sinkhorn_iterations": REQUIRED, "weight": REQUIRED, "contrastive_weight": REQUIRED},
        {"prototypes": check_positive_int, "top_k": check_positive_int, "embedding_dim": check_positive_int,
         "temperature": check_positive, "prototype_temperature": check_positive, "momentum": below_one,
         "sinkhorn_epsilon": check_positive, "sinkhorn_iterations": check_positive_int, "weight": check_positive,
         "contrastive_weight": check_non_negative}),
    "rankmixup": Entry("regbench.regularizers.rankmixup", {
        "variant": REQUIRED, "mixup_alpha": REQUIRED, "loss_weight": REQUIRED, "margin": REQUIRED,
        "num_mixes": REQUIRED, "mrl_mask": REQUIRED},
        {"mixup_alpha": check_positive, "loss_weight": check_non_negative, "margin": check_non_negative,
         "num_mixes": check_positive_int}),
    "rcal": Entry("regbench.regularizers.rcal", {
        "representation_epochs": REQUIRED, "temperature": REQUIRED, "projection_dim": REQUIRED,
        "view_crop_padding": REQUIRED, "view_hflip": REQUIRED, "lof_neighbors": REQUIRED,
        "tail_count_fraction": REQUIRED, "calibration_neighbors": REQUIRED, "covariance_ridge": REQUIRED,
        "samples_per_class": REQUIRED, "sampled_loss_weight": REQUIRED, "individual_weight": REQUIRED},
        {"temperature": check_positive, "projection_dim": check_positive_int, "view_hflip": boolean,
         "calibration_neighbors": check_positive_int, "covariance_ridge": check_non_negative,
         "samples_per_class": check_positive_int, "sampled_loss_weight": check_non_negative,
         "individual_weight": check_non_negative}),
    "sade": Entry("regbench.regularizers.sade", {
        "inverse_lambda": REQUIRED, "test_imbalance_factor": REQUIRED, "aggregation_epochs": REQUIRED,
        "aggregation_lr": REQUIRED, "aggregation_batch_size": REQUIRED, "view_crop_padding": REQUIRED},
        {"aggregation_lr": check_positive, "aggregation_batch_size": check_positive_int}),
    "storm": Entry("regbench.regularizers.meta_rescaling", {"meta_lr": REQUIRED, "dropout_rounds": REQUIRED},
                   {"meta_lr": check_positive}),
    "swa": Entry("regbench.regularizers.averaging", {"start": REQUIRED}),
    "transmix": Entry("regbench.regularizers.transmix", {
        "alpha": REQUIRED, "prob": REQUIRED, "attention_weight": REQUIRED, "label_smoothing": REQUIRED,
        "box": REQUIRED},
        {**MIXING, "label_smoothing": smoothing}),
    "weight_compander": Entry("regbench.regularizers.compander", {
        "function": REQUIRED, "learnable": REQUIRED, "a": REQUIRED, "b": REQUIRED}, {"learnable": boolean}),
})


def check_incompatible(owner: str, incompatible: Mapping[str, str]) -> None:
    """Refuse (a programming error) an `incompatible` mapping naming a regularizer that is not registered, so that
    a misspelt name can never silently drop an exclusion."""
    unknown = sorted(set(incompatible) - set(REGULARIZERS.entries))
    if unknown:
        raise TypeError(f"{owner}.incompatible names unregistered regularizers {unknown}; registered: "
                        f"{', '.join(REGULARIZERS.names())}")
