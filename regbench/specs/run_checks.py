"""Each component checked against the run's shape (regbench.runshape.RunShape), torch-free, so the planned-run checks
make them before the model code loads: a setting that would make the component harmful on the run raises a
ParamError naming its parameter (or a UserError); one that would leave it inactive, the run equal to one without
it, is returned as an Inactive reason. One table per family, by name: REGULARIZER_RUN_CHECKS (params, shape, run
config), NORM_RUN_CHECKS and SCHEDULE_RUN_CHECKS (params, shape). Also the arithmetic these checks share with the
techniques' code (EMA's decay, co-teaching's forget rate)."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from regbench.errors import ParamError, UserError, check
from regbench.runshape import Inactive, RunShape, check_count_or_fraction, count_or_fraction, is_fraction
from regbench.specs.norms import NORMS
from regbench.specs.optim import SCHEDULES
from regbench.specs.regularizer_values import MIN_HOLE_LENGTH
from regbench.specs.regularizers import REGULARIZERS

RegularizerCheck = Callable[[Mapping[str, Any], RunShape, Mapping[str, Any]], list[Inactive]]
RunCheck = Callable[[Mapping[str, Any], RunShape], list[Inactive]]

# Batch statistics of fewer samples are degenerate (one sample has no variance).
MIN_STATISTICS_BATCH = 2
# Noise types whose configured `rate` is the noise rate; `none` has rate 0, CIFAR-N files have no configured rate.
RATED_NOISE_TYPES = ("symmetric", "asymmetric", "pairflip")


# --- the arithmetic shared with the techniques --------------------------------------------------------------------
def ema_decay(step: int, decay: float, warmup: bool, warmup_gamma: float, warmup_power: float) -> float:
    """timm ModelEmaV3.get_decay: the first update copies the weights; with warmup the decay ramps up as
    1 - (1 + t / gamma) ** -power, capped at `decay`."""
    t = step - 1
    if t <= 0:
        return 0.0
    if not warmup:
        return decay
    return max(min(1.0 - (1.0 + t / warmup_gamma) ** -warmup_power, decay), 0.0)


def remember_rate(epoch: int, forget_rate: float, num_gradual: int) -> float:
    """R(T) = 1 - min(T / T_k * tau, tau) (Han et al., 2018, Alg. 1), T the 0-based epoch: the first epoch
    keeps every sample and tau is reached in epoch T_k."""
    return 1.0 - min(epoch / num_gradual * forget_rate, forget_rate)


def official_remember_rate(epoch: int, forget_rate: float, num_gradual: int) -> float:
    """1 - the official code's forget rate (bhanML/Co-teaching, main.py): a table linspace(0, tau, T_k) over
    its epoch numbers, tau after it; its training epochs are numbered from 1 (0 is the untrained model's
    evaluation), so 0-based training epoch T reads entry T + 1: tau / (T_k - 1) is already forgotten in the
    first epoch and tau is reached in epoch T_k - 2. The entry is computed as numpy's linspace does."""
    entry = epoch + 1
    if entry >= num_gradual - 1:
        return 1.0 - forget_rate
    return 1.0 - entry * (forget_rate / (num_gradual - 1))


REMEMBER_RATES = {"paper": remember_rate, "official": official_remember_rate}


def forget_rate_for(forget_rate: float | None, label_noise: Mapping[str, Any] | None) -> float:
    """The forget rate tau; null means the configured noise rate, as in the paper (tau = epsilon) and the
    official code (its default forget rate is the noise rate). Clean labels have noise rate 0. A given rate is in
    [0, 1) by its value rule (regbench.specs.regularizer_values)."""
    if forget_rate is not None:
        return float(forget_rate)
    check(label_noise is not None, "forget_rate", forget_rate,
          "null means the noise rate data.noise.rate, which needs the data config; give a rate in [0, 1)")
    kind = label_noise["type"]
    check(kind == "none" or kind in RATED_NOISE_TYPES, "forget_rate", forget_rate,
          f"null means the configured noise rate, and data.noise.type={kind} has none; give a rate in [0, 1) "
          f"(e.g. the label set's noise rate)")
    rate = 0.0 if kind == "none" else float(label_noise["rate"])
    check(rate < 1.0, "forget_rate", forget_rate, f"null means the noise rate, here data.noise.rate={rate}, "
          f"and co-teaching must keep some samples; give a rate in [0, 1)")
    return rate


def swa_start_epoch(start: float, max_epochs: int) -> int:
    """The first epoch SWA averages: `start` is a fraction of the run's epochs."""
    return math.floor(start * max_epochs)


def off_when_zero(key: str, why: str, as_float: bool = False) -> RegularizerCheck:
    """A technique that does nothing when its `key` is 0 (`as_float`: reported as the float the technique holds)."""
    def run_check(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
        value = float(params[key]) if as_float else params[key]
        return [Inactive(key, value, why)] if value == 0 else []
    return run_check


def one_device(name: str, why: str) -> RegularizerCheck:
    """A technique fitted to the whole training set, which each DDP process sees only a shard of."""
    def run_check(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
        if shape.world_size > 1:
            raise UserError(f"regularizer={name} trains on one device, not {shape.world_size}: {why}, which each DDP "
                            f"process sees only a shard of")
        return []
    return run_check


def smaller_padding(key: str, value: int, shape: RunShape) -> None:
    check(value < shape.image_side, key, value,
          f"reflect padding must be smaller than the {shape.image_side}-pixel image side")


# --- regularizers -------------------------------------------------------------------------------------------------
def ema_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    decay = float(params["decay"])
    if decay == 0:
        return [Inactive("decay", decay, "averages nothing: the average is the latest weights")]

    def decay_at(step: int) -> float:
        return ema_decay(step, decay, params["warmup"], float(params["warmup_gamma"]), float(params["warmup_power"]))

    steps = shape.total_steps
    # timm's effective averaging window, 1 / (1 - decay), at the run's last step.
    horizon = 1.0 / (1.0 - decay_at(steps))
    if horizon > steps:
        first_weight = math.prod(decay_at(step) for step in range(2, steps + 1))
        remedy = "or warmup=true" if not params["warmup"] else "or a smaller warmup_power"
        raise ParamError("decay", decay, f"it averages over about {horizon:.0f} steps (1 / (1 - decay)), more than "
                         f"the run's {shape.describe_steps()}: the evaluated weights would still be "
                         f"{first_weight:.0%} those after the first step; use decay <= {1 - 1 / steps:.4g} {remedy}")
    return []


def swa_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    start, epochs = float(params["start"]), shape.max_epochs
    if epochs - swa_start_epoch(start, epochs) == 1:
        averaged = f"the last of the run's {epochs} epochs" if epochs > 1 else "the run's single epoch"
        return [Inactive("start", start, f"averages only {averaged}: the average is the final weights (with BN "
                                         f"statistics recomputed)")]
    return []


def cutout_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    length, side = params["length"], shape.image_side
    pixels = count_or_fraction(length, side)
    size = "x".join(map(str, shape.image_shape[1:]))
    hole = f"a hole of {length} x {side} = {pixels} pixels" if is_fraction(length) else f"a hole of {pixels} pixels"
    allowed = (f"allowed on {size} images: {MIN_HOLE_LENGTH}..{side - 1} pixels, or a fraction of the side "
               f"such as 0.5 (the paper's CIFAR-10 hole, 16 pixels on 32x32)")
    check(pixels >= MIN_HOLE_LENGTH, "length", length, f"{hole} cuts nothing; {allowed}")
    check(pixels < side, "length", length, f"{hole} is as wide as the {size} images and can blank them entirely; "
                                           f"{allowed}")
    return []


def coteaching_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    forget_rate = forget_rate_for(params["forget_rate"], run.get("data", {}).get("noise"))
    if forget_rate == 0:
        return [Inactive("forget_rate", forget_rate, "keeps every sample: two networks trained on all labels")]
    num_gradual = params["num_gradual"]
    if num_gradual > shape.max_epochs:
        reached = 1.0 - REMEMBER_RATES[params["schedule"]](shape.max_epochs - 1, forget_rate, num_gradual)
        return [Inactive("num_gradual", num_gradual,
                         f"is longer than the run's {shape.max_epochs} epochs: the forget rate reaches only "
                         f"{reached:.3g}, not forget_rate={forget_rate:g}, by the last epoch")]
    return []


def mixup_cutmix_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    if params["prob"] > 0:
        return []
    smoothing = params["label_smoothing"]
    smoothing_only = f": only its label_smoothing={smoothing} acts" if smoothing else ""
    return [Inactive("prob", params["prob"], f"never mixes a batch{smoothing_only}")]


def multisample_dropout_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    if params["rate"] == 0:
        return [Inactive("rate", params["rate"], "never drops a unit, so every sample is the same pass")]
    if params["num_samples"] == 1:
        return [Inactive("num_samples", params["num_samples"], "draws a single mask: plain dropout")]
    return []


def noise_mask_pretrain_count(pretrain_epochs: int | float, max_epochs: int) -> int:
    """The epochs the noise mask pre-trains on masked images: a count, or a fraction of the run's epochs."""
    return count_or_fraction(pretrain_epochs, max_epochs)


def noise_mask_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    side, grid, pretrain_epochs = shape.image_side, params["grid"], params["pretrain_epochs"]
    check(grid <= side, "grid", grid,
          f"must be at most the image side {side} (one cell per pixel; the paper: 64 cells on 224 pixels)")
    if shape.batch_size < 2:
        raise UserError(f"regularizer=noise_mask needs data.batch_size >= 2: its policy's batch norms cannot "
                        f"train on batches of {shape.batch_size}")
    count = noise_mask_pretrain_count(pretrain_epochs, shape.max_epochs)
    of_run = f" ({count} of {shape.max_epochs} epochs)" if is_fraction(pretrain_epochs) else ""
    check(count < shape.max_epochs, "pretrain_epochs", pretrain_epochs,
          f"must leave epochs of trainer.max_epochs={shape.max_epochs}{of_run} to fine-tune the classifier on "
          f"clean images after the masked pre-training")
    if count == 0:
        return [Inactive("pretrain_epochs", pretrain_epochs, f"never masks a batch{of_run}")]
    return []


def rcal_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    setting = params["representation_epochs"]
    epochs = count_or_fraction(setting, shape.max_epochs)
    check(1 <= epochs < shape.max_epochs, "representation_epochs", setting,
          f"must leave at least one epoch to each phase: {epochs} of trainer.max_epochs={shape.max_epochs}")
    smaller_padding("view_crop_padding", params["view_crop_padding"], shape)
    return one_device("rcal", "its class Gaussians are estimated from the whole training set")(params, shape, run)


def sade_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    smaller_padding("view_crop_padding", params["view_crop_padding"], shape)
    return []


def transmix_run(params: Mapping[str, Any], shape: RunShape, run: Mapping[str, Any]) -> list[Inactive]:
    if params["prob"] == 0:
        return [Inactive("prob", params["prob"], "never mixes a batch")]
    if params["attention_weight"] == 0:
        return [Inactive("attention_weight", float(params["attention_weight"]),
                         "weighs the labels by the pasted area alone: plain CutMix, without the attention")]
    return []


REGULARIZER_RUN_CHECKS: dict[str, RegularizerCheck] = {
    "alpha_dropout": off_when_zero("rate", "never drops a unit"),
    "class_gmm": one_device("class_gmm", "its class Gaussians are fitted to the whole training set"),
    "coteaching": coteaching_run,
    "cutmix": off_when_zero("prob", "never mixes a batch"),
    "cutout": cutout_run,
    "dropblock": off_when_zero("rate", "never drops a block"),
    "dropout": off_when_zero("rate", "never drops a unit"),
    "droppath": off_when_zero("drop_prob", "never drops a residual branch"),
    "elr": off_when_zero("lam", "adds nothing to the cross-entropy", as_float=True),
    "ema": ema_run,
    "label_smoothing": off_when_zero("eps", "leaves the targets one-hot"),
    "mixoe": off_when_zero("beta", "never adds the mixed loss (its extra forward pass is wasted)"),
    "mixup": off_when_zero("prob", "never mixes a batch"),
    "mixup_cutmix": mixup_cutmix_run,
    "multisample_dropout": multisample_dropout_run,
    "noise_mask": noise_mask_run,
    "palm": one_device("palm", "its prototypes and its score's Gaussian are of the whole training set"),
    "rankmixup": off_when_zero("loss_weight", "never adds the ranking loss (its extra forward pass is wasted)"),
    "rcal": rcal_run,
    "sade": sade_run,
    "swa": swa_run,
    "transmix": transmix_run,
}


def regularizer_run_check(name: str, params: Mapping[str, Any] | None, shape: RunShape,
                          run: Mapping[str, Any] | None = None) -> list[Inactive]:
    """Regularizer `name` with its `params` (its YAML's defaults for those left out) on a run of `shape`; `run` is
    the run's config (co-teaching's null forget rate is its data.noise rate)."""
    check_run = REGULARIZER_RUN_CHECKS.get(name)
    return [] if check_run is None else check_run(REGULARIZERS.with_defaults(name, params or {}), shape, run or {})


# --- norms --------------------------------------------------------------------------------------------------------
def ghost_batches_run(params: Mapping[str, Any], shape: RunShape) -> list[Inactive]:
    setting, batch = params["virtual_batch_size"], shape.batch_size
    check_count_or_fraction("virtual_batch_size", setting, MIN_STATISTICS_BATCH, "samples", "data.batch_size")
    size = count_or_fraction(setting, batch)
    check(size >= MIN_STATISTICS_BATCH, "virtual_batch_size", setting,
          f"gives virtual batches of {size} samples at data.batch_size={batch}; batch statistics need at least "
          f"{MIN_STATISTICS_BATCH}")
    if batch // size <= 1:
        samples = f"({size} samples) " if is_fraction(setting) else ""
        return [Inactive("virtual_batch_size", setting,
                         f"{samples}is more than half of data.batch_size={batch}: each batch is one virtual batch, "
                         f"normalized exactly as by batchnorm")]
    return []


def bcn_estimates_run(params: Mapping[str, Any], shape: RunShape) -> list[Inactive]:
    """The batch stage normalizes with its running estimates in training too, so they must move within the run."""
    momentum = params["momentum"]
    if momentum == 0:
        return [Inactive("momentum", momentum, "never moves the batch stage's estimates from mean 0, variance 1: "
                                               "the batch stage is a plain affine map (bcn_ws acts as ws_groupnorm)")]
    if 1 / momentum > shape.total_steps:
        return [Inactive("momentum", momentum,
                         f"moves the batch stage's estimates over about {1 / momentum:.0f} steps, more than the "
                         f"run's {shape.describe_steps()}: they stay near their initial mean 0, variance 1")]
    return []


def warmup_iters(params: Mapping[str, Any], shape: RunShape) -> int:
    check_count_or_fraction("warmup_iters", params["warmup_iters"], 0, "training steps", "the run's training steps")
    return count_or_fraction(params["warmup_iters"], shape.total_steps)


def warmup_covering(setting: Any, steps: int, given: str, shape: RunShape, consequence: str) -> list[Inactive]:
    """A norm's warm-up of `steps` (`given`: how they follow from the `setting`) that covers the run."""
    if steps < shape.total_steps:
        return []
    return [Inactive("warmup_iters", setting, f"{given}covers the run's {shape.describe_steps()}: {consequence}")]


def powernorm_warmup_run(params: Mapping[str, Any], shape: RunShape) -> list[Inactive]:
    setting, steps = params["warmup_iters"], warmup_iters(params, shape)
    return warmup_covering(setting, steps, f"({steps} steps) " if is_fraction(setting) else "", shape,
                           "every step normalizes by the batch's own quadratic mean, so the running statistic and "
                           "the approximate backward never train")


def unified_norm_warmup_run(params: Mapping[str, Any], shape: RunShape) -> list[Inactive]:
    setting, steps = params["warmup_iters"], max(warmup_iters(params, shape), params["window"])
    return warmup_covering(setting, steps, f"({steps} steps, at least the window) " if steps != setting else "",
                           shape, "every step normalizes by the batch's own statistics, so neither fluctuation "
                                  "smoothing nor outlier filtration ever acts")


NORM_RUN_CHECKS: dict[str, RunCheck] = {
    "bcn_ws": bcn_estimates_run,
    "ghost_batchnorm": ghost_batches_run,
    "powernorm": powernorm_warmup_run,
    "unified_norm": unified_norm_warmup_run,
}


# --- schedules ----------------------------------------------------------------------------------------------------
def warmup_steps(warmup_epochs: float, steps_per_epoch: int) -> int:
    return int(round(warmup_epochs * steps_per_epoch))


def warmup_length_run(params: Mapping[str, Any], shape: RunShape) -> list[Inactive]:
    warmup_epochs = params["warmup_epochs"]
    steps = warmup_steps(warmup_epochs, shape.steps_per_epoch)
    if steps >= shape.total_steps:
        return [Inactive("warmup_epochs", warmup_epochs, f"({steps} steps) covers the run's {shape.describe_steps()}: "
                                                         f"the learning rate only ever ramps up")]
    return []


# Every schedule warms up linearly over warmup_epochs.
SCHEDULE_RUN_CHECKS: dict[str, RunCheck] = {name: warmup_length_run for name in SCHEDULES.names()}


def check_run_tables() -> None:
    """Refuse (a programming error, at import) a check for a component that is not declared."""
    for table, registry in ((REGULARIZER_RUN_CHECKS, REGULARIZERS), (NORM_RUN_CHECKS, NORMS)):
        unknown = sorted(set(table) - set(registry.names()))
        if unknown:
            raise TypeError(f"run checks for undeclared {registry.family}s {unknown}")


check_run_tables()
