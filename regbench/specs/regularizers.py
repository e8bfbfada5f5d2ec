"""The regularizer registry's declared entries, the one set of `exclusive` tags and which regularizers claim them
(regularizers that claim the same tag cannot be stacked), and the pairs that cannot be stacked for their own
reasons. Declared here, torch-free, so the config checks refuse a stack before the model code loads; a tag outside
the set or a misspelt name fails at import, so it can never silently drop an exclusion."""
from __future__ import annotations

from enum import Enum
from typing import Any, Mapping

from regbench.errors import (UserError, check_fraction, check_non_negative, check_positive, check_positive_int,
                             check_probability)
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.regularizer_values import (
    ABET_NUMERATORS, COMPANDER_FUNCTIONS, COTEACHING_SCHEDULES, COVARIANCES, CUTMIX_BOXES, DEPTH_RULES,
    DROPBLOCK_SCHEDULES, MIN_HOLE_LENGTH, MIXING, MIXOE_MODES, MIXOE_OUTLIERS, MRL_MASKS, NOISE_MASK_BASELINES,
    RANKMIXUP_VARIANTS, SEED_REGIONS, attention_weight, blur_fraction, count_or_fraction_of,
    drop_rate, fraction_of_epochs, inverse_lambda, ipr_threshold, neuron_fractions, optional_forget_rate,
    optional_scale, optional_width, stage_numbers, tail_fraction, test_imbalance_factor, view_crop_padding)
from regbench.specs.values import allowed_names, at_least, below_one, boolean, one_of, running_momentum, smoothing


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


REGULARIZERS = Registry("regularizer", "regularizer", context=("seed", "label_noise", "dataset", "backbone"), entries={
    "abet": Entry("regbench.regularizers.abet", {"numerator": REQUIRED}, {"numerator": one_of(ABET_NUMERATORS)}),
    "alpha_dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED}, {"rate": below_one}),
    "batchformer": Entry("regbench.regularizers.batchformer", {
        "num_heads": REQUIRED, "ffn_dim": REQUIRED, "dropout": REQUIRED},
        {"num_heads": check_positive_int, "ffn_dim": optional_width, "dropout": below_one}),
    "class_gmm": Entry("regbench.regularizers.class_gmm", {
        "components": REQUIRED, "attribute_dim": REQUIRED, "bottleneck_dim": REQUIRED, "covariance": REQUIRED,
        "weight": REQUIRED, "center_weight": REQUIRED, "weight_momentum": REQUIRED, "covariance_ridge": REQUIRED},
        {"components": check_positive_int, "attribute_dim": check_positive_int, "bottleneck_dim": check_positive_int,
         "covariance": one_of(COVARIANCES), "weight": check_non_negative, "center_weight": check_non_negative,
         "weight_momentum": running_momentum, "covariance_ridge": check_non_negative}),
    "coteaching": Entry("regbench.regularizers.noisy_labels", {
        "forget_rate": REQUIRED, "num_gradual": REQUIRED, "schedule": REQUIRED},
        {"forget_rate": optional_forget_rate, "num_gradual": check_positive_int,
         "schedule": allowed_names(COTEACHING_SCHEDULES)}),
    "cutmix": Entry("regbench.regularizers.mixing", {"alpha": REQUIRED, "prob": REQUIRED, "box": REQUIRED},
                    {**MIXING, "box": allowed_names(CUTMIX_BOXES)}),
    "cutout": Entry("regbench.regularizers.erasing", {"length": REQUIRED, "n_holes": REQUIRED},
                    {"length": count_or_fraction_of(MIN_HOLE_LENGTH, "pixels", "the image side"),
                     "n_holes": check_positive_int}),
    "dropblock": Entry("regbench.regularizers.dropblock", {
        "rate": REQUIRED, "block_size": REQUIRED, "stages": REQUIRED, "depth_rule": REQUIRED, "schedule": REQUIRED,
        "seed_region": REQUIRED, "share_mask_across_channels": REQUIRED},
        {"rate": drop_rate, "block_size": check_positive_int, "stages": stage_numbers,
         "depth_rule": one_of(DEPTH_RULES), "schedule": one_of(DROPBLOCK_SCHEDULES),
         "seed_region": one_of(SEED_REGIONS), "share_mask_across_channels": boolean}),
    "dropout": Entry("regbench.regularizers.dropout", {"rate": REQUIRED}, {"rate": below_one}),
    "droppath": Entry("regbench.regularizers.dropout", {"drop_prob": REQUIRED}, {"drop_prob": below_one}),
    "elr": Entry("regbench.regularizers.noisy_labels", {"lam": REQUIRED, "beta": REQUIRED},
                 {"lam": check_non_negative, "beta": below_one}),
    "ema": Entry("regbench.regularizers.averaging", {
        "decay": REQUIRED, "warmup": REQUIRED, "warmup_gamma": REQUIRED, "warmup_power": REQUIRED},
        {"decay": below_one, "warmup": boolean, "warmup_gamma": check_positive, "warmup_power": check_positive}),
    "ipr_pruning": Entry("regbench.regularizers.ipr_pruning", {
        "fractions": REQUIRED, "high_ipr": REQUIRED, "bins": REQUIRED},
        {"fractions": neuron_fractions, "high_ipr": ipr_threshold, "bins": at_least(2)}),
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
        {"pretrain_epochs": count_or_fraction_of(0, "epochs on masked images", "trainer.max_epochs"),
         "grid": check_positive_int, "blur_sigma": blur_fraction, "policy_width": check_positive_int,
         "policy_lr": check_positive, "baseline": allowed_names(NOISE_MASK_BASELINES), "prior_weight": check_fraction,
         "prior_momentum": check_fraction}),
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
        {"variant": one_of(RANKMIXUP_VARIANTS), "mixup_alpha": check_positive, "loss_weight": check_non_negative,
         "margin": check_non_negative, "num_mixes": check_positive_int, "mrl_mask": one_of(MRL_MASKS)}),
    "rcal": Entry("regbench.regularizers.rcal", {
        "representation_epochs": REQUIRED, "temperature": REQUIRED, "projection_dim": REQUIRED,
        "view_crop_padding": REQUIRED, "view_hflip": REQUIRED, "lof_neighbors": REQUIRED,
        "tail_count_fraction": REQUIRED, "calibration_neighbors": REQUIRED, "covariance_ridge": REQUIRED,
        "samples_per_class": REQUIRED, "sampled_loss_weight": REQUIRED, "individual_weight": REQUIRED},
        {"representation_epochs": count_or_fraction_of(1, "epochs", "trainer.max_epochs"),
         "temperature": check_positive, "projection_dim": check_positive_int, "view_crop_padding": view_crop_padding,
         "view_hflip": boolean, "lof_neighbors": at_least(1, "the local outlier factor's neighbourhood"),
         "tail_count_fraction": tail_fraction, "calibration_neighbors": check_positive_int,
         "covariance_ridge": check_non_negative, "samples_per_class": check_positive_int,
         "sampled_loss_weight": check_non_negative, "individual_weight": check_non_negative}),
    "sade": Entry("regbench.regularizers.sade", {
        "inverse_lambda": REQUIRED, "test_imbalance_factor": REQUIRED, "aggregation_epochs": REQUIRED,
        "aggregation_lr": REQUIRED, "aggregation_batch_size": REQUIRED, "view_crop_padding": REQUIRED},
        {"inverse_lambda": inverse_lambda, "test_imbalance_factor": test_imbalance_factor,
         "aggregation_epochs": at_least(0, "0 keeps equal expert weights"), "aggregation_lr": check_positive,
         "aggregation_batch_size": check_positive_int, "view_crop_padding": view_crop_padding}),
    "storm": Entry("regbench.regularizers.meta_rescaling", {"meta_lr": REQUIRED, "dropout_rounds": REQUIRED},
                   {"meta_lr": check_positive, "dropout_rounds": at_least(0)}),
    "swa": Entry("regbench.regularizers.averaging", {"start": REQUIRED}, {"start": fraction_of_epochs}),
    "transmix": Entry("regbench.regularizers.transmix", {
        "alpha": REQUIRED, "prob": REQUIRED, "attention_weight": REQUIRED, "label_smoothing": REQUIRED,
        "box": REQUIRED},
        {**MIXING, "attention_weight": attention_weight, "label_smoothing": smoothing,
         "box": allowed_names(CUTMIX_BOXES)}),
    "weight_compander": Entry("regbench.regularizers.compander", {
        "function": REQUIRED, "learnable": REQUIRED, "a": REQUIRED, "b": REQUIRED},
        {"function": allowed_names(COMPANDER_FUNCTIONS), "learnable": boolean, "a": optional_scale,
         "b": optional_scale}),
})


# The exclusive tags each regularizer claims (regularizers sharing a tag cannot be stacked);
# PARAMETER_TAGS adds those a regularizer claims only with some parameters.
EXCLUSIVE_TAGS: dict[str, tuple[Exclusion, ...]] = {
    "abet": (Exclusion.OOD_METHOD,),
    "alpha_dropout": (Exclusion.FEATURE_DROPOUT,),
    "class_gmm": (Exclusion.OOD_METHOD,),
    "coteaching": (Exclusion.NOISY_LABEL_LOSS, Exclusion.EVALUATED_NETWORK),
    "cutmix": (Exclusion.INPUT_MIXING, Exclusion.REGIONAL_DROPOUT),
    "cutout": (Exclusion.REGIONAL_DROPOUT,),
    "dropout": (Exclusion.FEATURE_DROPOUT,),
    "elr": (Exclusion.NOISY_LABEL_LOSS,),
    "ema": (Exclusion.WEIGHT_AVERAGING, Exclusion.EVALUATED_NETWORK),
    "label_smoothing": (Exclusion.LABEL_SMOOTHING,),
    "mixoe": (Exclusion.INPUT_MIXING,),
    "mixup": (Exclusion.INPUT_MIXING,),
    "mixup_cutmix": (Exclusion.INPUT_MIXING, Exclusion.REGIONAL_DROPOUT),
    "multisample_dropout": (Exclusion.FEATURE_DROPOUT,),
    "nested_dropout": (Exclusion.FEATURE_DROPOUT,),
    # PALM scores OOD inputs itself, and it taps the penultimate features by wrapping the head.
    "palm": (Exclusion.OOD_METHOD, Exclusion.FEATURE_DROPOUT),
    "rankmixup": (Exclusion.INPUT_MIXING,),
    # RCAL replaces the loss on the noisy labels, and it taps the penultimate features by wrapping the head.
    "rcal": (Exclusion.NOISY_LABEL_LOSS, Exclusion.FEATURE_DROPOUT),
    "storm": (Exclusion.NOISY_LABEL_LOSS,),
    "swa": (Exclusion.WEIGHT_AVERAGING, Exclusion.EVALUATED_NETWORK),
    # TransMix folds label smoothing into both targets before the re-weighting (as the official code does); a
    # smoothing applied after it in the stack would act on targets its loss hook no longer uses.
    "transmix": (Exclusion.INPUT_MIXING, Exclusion.REGIONAL_DROPOUT, Exclusion.LABEL_SMOOTHING),
}
# name -> {parameter: tag}: the tag is claimed when the parameter is above 0 (mixup_cutmix's own label smoothing
# would smooth the targets twice with `label_smoothing`).
PARAMETER_TAGS: dict[str, dict[str, Exclusion]] = {"mixup_cutmix": {"label_smoothing": Exclusion.LABEL_SMOOTHING}}
# The registered regularizers each cannot be stacked with, beyond the shared tags: name -> {other: why}.
INCOMPATIBLE: dict[str, dict[str, str]] = {
    # Techniques whose own head around the classifier AbeT's temperature cannot sit inside.
    "abet": {
        "batchformer": "BatchFormer classifies encoder-transformed features too, which AbeT's temperature never "
                       "sees",
        "multisample_dropout": "its several dropped copies of the features per sample would each get their own "
                               "temperature, and AbeT's score reads one",
        "sade": "each of SADE's three experts would get its own temperature and loss, and AbeT's score reads one "
                "head",
        "rcal": "RCAL's representation head replaces the classifier that AbeT divides by its temperature",
    },
    "palm": {
        "batchformer": "its transformer mixes the batch's features, which PALM embeds as each image's own",
        "sade": "it copies the head into three experts, and PALM's projection with it",
        "storm": "its meta step runs the network again on other images, overwriting the features PALM embeds",
    },
    "rcal": {
        "sade": "both replace the head: SADE's three experts and RCAL's representation tap",
        "batchformer": "its transformer mixes the batch's features, which RCAL's Gaussians and contrastive views "
                       "assume are each image's own",
    },
    "sade": {
        "multisample_dropout": "both make the head return several logits per sample and compute the loss from them",
        "nested_dropout": "its per-width evaluation assumes one head, and each expert would draw its own width",
        "coteaching": "co-teaching selects samples by the plain cross-entropy of one head, not SADE's three losses",
    },
}


def exclusive_tags(name: str, params: Mapping[str, Any] | None) -> tuple[Exclusion, ...]:
    """The tags regularizer `name` claims with its `params` (a parameter that adds a tag and is left out takes its
    YAML default; a built regularizer passes its own, so asking reads no file)."""
    conditional, params = PARAMETER_TAGS.get(name, {}), params or {}
    if any(key not in params for key in conditional):
        params = REGULARIZERS.with_defaults(name, params)
    return EXCLUSIVE_TAGS.get(name, ()) + tuple(tag for key, tag in conditional.items() if params[key] > 0)


def check_stackable(regularizers: Mapping[str, Mapping[str, Any] | None]) -> None:
    """Refuse a stack (name -> params, in list order) in which two regularizers claim one exclusive tag, or one
    names another as incompatible; needs no torch, so the config checks refuse it before the model code loads."""
    claimed: dict[Exclusion, str] = {}
    for name, params in regularizers.items():
        for tag in exclusive_tags(name, params):
            if tag in claimed:
                raise UserError(f"regularizer=[{','.join(regularizers)}]: {claimed[tag]} and {name} both do "
                                f"{tag.value}; keep only one of them")
            claimed[tag] = name
    for name in regularizers:
        for other in regularizers:
            if other in INCOMPATIBLE.get(name, {}):
                raise UserError(f"regularizer={name} cannot be stacked with {other}: {INCOMPATIBLE[name][other]}")


def check_exclusion_tables() -> None:
    """Refuse (a programming error, at import) a table naming a regularizer that is not declared, or a tag that is
    not an Exclusion member, so a misspelt name can never silently drop an exclusion."""
    for table in (EXCLUSIVE_TAGS, PARAMETER_TAGS, INCOMPATIBLE):
        unknown = sorted(set(table) - set(REGULARIZERS.entries))
        if unknown:
            raise TypeError(f"exclusions name undeclared regularizers {unknown}")
    for name, others in INCOMPATIBLE.items():
        unknown = sorted(set(others) - set(REGULARIZERS.entries))
        if unknown:
            raise TypeError(f"INCOMPATIBLE[{name!r}] names unregistered regularizers {unknown}; registered: "
                            f"{', '.join(REGULARIZERS.names())}")
    for name, tags in EXCLUSIVE_TAGS.items():
        check_exclusive(name, tags)
    for name, params in PARAMETER_TAGS.items():
        check_exclusive(name, tuple(params.values()))


check_exclusion_tables()
