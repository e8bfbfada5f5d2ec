"""The value rules of the regularizers' parameters that need no knowledge of the run, and the names those parameters
allow: torch-free, so a bad value is one line before the model code loads (the entries in
regbench.specs.regularizers declare them; building a regularizer applies them too). Rules that compare a value
with the run (a hole against the image side) are in regbench.specs.run_checks."""
from __future__ import annotations

import math
from typing import Any

from regbench.errors import check, check_positive, check_probability
from regbench.runshape import check_count_or_fraction
from regbench.specs.evaluation import TENSOR_DATASETS
from regbench.specs.values import Rule, is_int, is_list, is_number

# AbeT's logit numerators h(z): GODIN's cosine similarity to each class vector (the paper's), or the inner product
# w . z + b of the backbone's linear head (GODIN's h^I).
ABET_NUMERATORS = ("cosine", "inner")
# class_gmm's per-component covariance.
COVARIANCES = ("full", "diagonal")
# The weight compander's functions Psi (regbench.regularizers.compander.COMPANDERS holds their code).
COMPANDER_FUNCTIONS = ("arctan", "arsinh", "erf")
# co-teaching's forget-rate schedule: the paper's, or the official code's table (regbench.regularizers.noisy_labels).
COTEACHING_SCHEDULES = ("paper", "official")
# CutMix's box: the exact kept fraction as lambda, or the official code's clipped box with lambda corrected.
CUTMIX_BOXES = ("exact", "official")
# DropBlock's rate per stage, its ramp over training, and where a block's seed may fall.
DEPTH_RULES = ("uniform", "linear")
DROPBLOCK_SCHEDULES = ("ramp", "constant")
SEED_REGIONS = ("valid", "whole")
# A hole spans [c - length // 2, c + length // 2) (the paper's code), so a side below 2 cuts nothing.
MIN_HOLE_LENGTH = 2
# MixOE's outlier sets: the datasets held in memory as uint8 images, as for eval=[ood]; its two ways to mix.
MIXOE_OUTLIERS = TENSOR_DATASETS
MIXOE_MODES = ("mixup", "cutmix")
# The noise-mask policy's REINFORCE baseline.
NOISE_MASK_BASELINES = ("none", "batch_mean")
# RankMixup's losses, and how its margin ranking loss masks the mixes: per_sample, each sample's margin term counts
# only when its mix is a real one (partner of another class); official, the official code's (B,) mask times (B, 1)
# terms broadcast to (B, B), whose mean is mean(mask) * mean(term), so same-class mixes are ranked too and all terms
# are scaled by the real-mix share.
RANKMIXUP_VARIANTS = ("mrl", "mndcg")
MRL_MASKS = ("per_sample", "official")

# Rules shared by the mixing regularizers: Beta(alpha, alpha) needs alpha > 0; each batch is mixed with `prob`.
MIXING = {"alpha": check_positive, "prob": check_probability}


def count_or_fraction_of(minimum: int, unit: str, whole: str) -> Rule:
    """An integer >= `minimum` of `unit`, or a fraction in (0, 1) of `whole`."""
    return lambda key, value: check_count_or_fraction(key, value, minimum, unit, whole)


def fraction_of_epochs(key: str, value: Any) -> None:
    check(is_number(value) and 0.0 <= value < 1.0, key, value, "must be a fraction of the epochs in [0, 1)")


def optional_width(key: str, value: Any) -> None:
    check(value is None or (is_int(value) and value > 0), key, value,
          "must be a positive integer, or null for the feature width (the official code)")


def optional_scale(key: str, value: Any) -> None:
    check(value is None or (is_number(value) and math.isfinite(value) and value > 0), key, value,
          "must be a number > 0, or null for the paper's value (Table I; learnable: the initial value)")


def optional_forget_rate(key: str, value: Any) -> None:
    check(value is None or (is_number(value) and 0.0 <= value < 1.0), key, value,
          "must be in [0, 1), or null for the noise rate")


def drop_rate(key: str, value: Any) -> None:
    check(is_number(value) and 0.0 <= value < 1.0, key, value,
          "must be in [0, 1): the share of units dropped, 1 - keep_prob")


def stage_numbers(key: str, value: Any) -> None:
    ok = value == "all" or (is_list(value) and len(value) > 0 and all(is_int(s) and s >= 1 for s in value)
                            and len(set(value)) == len(value))
    check(ok, key, value, "must be 'all' or a list of distinct stage numbers counted from 1 at the input "
                          "(e.g. [3, 4], the DropBlock paper's ResNet groups 3 and 4)")


def neuron_fractions(key: str, value: Any) -> None:
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(is_number(f) and 0 < f <= 1 for f in value)
    check(ok, key, value, "must be a non-empty list of fractions of the hidden neurons in (0, 1]")


def ipr_threshold(key: str, value: Any) -> None:
    check(is_number(value) and 0 < value < 1, key, value, "must be an IPR in (0, 1)")


def blur_fraction(key: str, value: Any) -> None:
    # Below half the side, the blur kernel's half-width round(sigma) stays under the side (reflect padding).
    check(is_number(value) and 0 <= value < 0.5, key, value,
          "must be a fraction of the image side in [0, 0.5) (0: no blur)")


def view_crop_padding(key: str, value: Any) -> None:
    check(is_int(value) and value >= 1, key, value,
          "must be an integer >= 1 (pixels of reflect padding for the random crops of the two views; "
          "0 would make the views identical)")


def tail_fraction(key: str, value: Any) -> None:
    check(is_number(value) and 0 <= value <= 1, key, value,
          "must be in [0, 1] (a class is tail below this fraction of the largest class's labels; 0: none)")


def inverse_lambda(key: str, value: Any) -> None:
    check(is_number(value) and math.isfinite(value) and value >= 0, key, value,
          "must be a number >= 0 (the paper's lambda: 2)")


def test_imbalance_factor(key: str, value: Any) -> None:
    check(is_number(value) and math.isfinite(value) and value >= 1, key, value,
          "must be a number >= 1 (n_max / n_min of the long-tailed test sets)")


def attention_weight(key: str, value: Any) -> None:
    check(is_number(value) and 0.0 <= value <= 1.0, key, value,
          "must be in [0, 1] (0.5: the paper's mean of area and attention lambda, 1: attention alone)")
