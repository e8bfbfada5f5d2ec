"""Each component's check against the run's shape: every refusal (a harmful setting, one line) and every inactive
reason (the run would equal one without the technique), with the numbers worked out by hand."""
from __future__ import annotations

import pytest
import torch

from regbench.errors import ParamError, UserError
from regbench.config.inactivity import inactive_components
from regbench.norms import norm_layer_from_config
from regbench.regularizers import create_regularizer
from regbench.specs import run_checks
from regbench.specs.run_checks import NORM_RUN_CHECKS, SCHEDULE_RUN_CHECKS, regularizer_run_check
from regbench.runshape import Inactive, RunShape, count_or_fraction

# digits' default run: 1295 training images in batches of 64 -> 20 steps per epoch, 10 epochs -> 200 steps.
DIGITS_RUN = RunShape(image_shape=(1, 8, 8), train_images=1295, batch_size=64, world_size=1,
                      max_epochs=10)
CIFAR_RUN = RunShape(image_shape=(3, 32, 32), train_images=45000, batch_size=512, world_size=1,
                     max_epochs=10)


def run_of(epochs: int) -> RunShape:
    return RunShape((1, 8, 8), 1295, 64, 1, epochs)


def test_digits_run_shape():
    assert (DIGITS_RUN.steps_per_epoch, DIGITS_RUN.total_steps) == (20, 200)
    assert DIGITS_RUN.describe_steps() == "200 steps (10 epochs of 20)"
    assert run_of(1).describe_steps() == "20 steps (1 epoch of 20)"


def test_count_or_fraction_follows_scikit_learns_size_convention():
    assert count_or_fraction(16, 8) == 16  # an integer is a count as it stands
    assert count_or_fraction(0.5, 8) == 4 and count_or_fraction(0.625, 32) == 20 and count_or_fraction(0.25, 512) == 128


# --- regularizers: inactive ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params,key,phrase", [
    ("dropout", {"rate": 0.0}, "rate", "never drops a unit"),
    ("alpha_dropout", {"rate": 0.0}, "rate", "never drops a unit"),
    ("droppath", {"drop_prob": 0.0}, "drop_prob", "never drops a residual branch"),
    ("multisample_dropout", {"rate": 0.0, "num_samples": 8}, "rate", "every sample is the same pass"),
    ("multisample_dropout", {"rate": 0.5, "num_samples": 1}, "num_samples", "a single mask: plain dropout"),
    ("label_smoothing", {"eps": 0.0}, "eps", "leaves the targets one-hot"),
    ("mixup", {"alpha": 0.2, "prob": 0.0}, "prob", "never mixes a batch"),
    ("cutmix", {"alpha": 1.0, "prob": 0.0}, "prob", "never mixes a batch"),
    ("mixup_cutmix", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.0, "switch_prob": 0.5,
                      "label_smoothing": 0.1}, "prob", "never mixes a batch: only its label_smoothing=0.1 acts"),
    ("mixup_cutmix", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.0, "switch_prob": 0.5,
                      "label_smoothing": 0.0}, "prob", "never mixes a batch"),
    ("transmix", {"alpha": 1.0, "prob": 0.0, "attention_weight": 0.5, "label_smoothing": 0.1}, "prob",
     "never mixes a batch"),
    ("transmix", {"alpha": 1.0, "prob": 1.0, "attention_weight": 0.0, "label_smoothing": 0.1}, "attention_weight",
     "plain CutMix"),
    ("rankmixup", {"variant": "mrl", "mixup_alpha": 2.0, "loss_weight": 0.0, "margin": 2.0, "num_mixes": 1},
     "loss_weight", "never adds the ranking loss"),
    ("elr", {"lam": 0.0, "beta": 0.7}, "lam", "adds nothing to the cross-entropy"),
    ("coteaching", {"forget_rate": 0.0, "num_gradual": 10, "schedule": "paper"}, "forget_rate", "keeps every sample"),
    ("ema", {"decay": 0.0}, "decay", "the average is the latest weights"),
])
def test_a_setting_that_turns_the_technique_off_is_reported_inactive(name, params, key, phrase):
    reasons = regularizer_run_check(name, params, DIGITS_RUN)
    assert len(reasons) == 1 and reasons[0].key == key and reasons[0].value == params[key]
    assert phrase in reasons[0].why


@pytest.mark.parametrize("name,params", [
    ("dropout", {"rate": 0.5}), ("alpha_dropout", {"rate": 0.05}), ("droppath", {"drop_prob": 0.5}),
    ("multisample_dropout", {"rate": 0.5, "num_samples": 8}), ("label_smoothing", {"eps": 0.1}),
    ("mixup", {"alpha": 0.2, "prob": 1.0}), ("cutmix", {"alpha": 1.0, "prob": 0.5}),
    ("transmix", {"alpha": 1.0, "prob": 1.0, "attention_weight": 0.5, "label_smoothing": 0.1}),
    ("rankmixup", {"variant": "mrl", "mixup_alpha": 2.0, "loss_weight": 0.1, "margin": 2.0, "num_mixes": 1}),
    ("elr", {"lam": 3.0, "beta": 0.7}), ("coteaching", {"forget_rate": 0.2, "num_gradual": 10, "schedule": "paper"}),
    ("cutout", {"length": 0.5, "n_holes": 1}), ("ema", {"decay": 0.999, "warmup": True}), ("swa", {"start": 0.75}),
    ("nested_dropout", {"mu": 0.0, "sigma": 10.0}),
])
def test_the_papers_settings_act_on_digits_default_run(name, params):
    assert regularizer_run_check(name, params, DIGITS_RUN) == []


def test_an_inactive_value_is_reported_as_the_technique_holds_it():
    """ELR holds its weight as a float, as the built regularizer reported it: lam=0 reads lam=0.0."""
    [reason] = regularizer_run_check("elr", {"lam": 0, "beta": 0.7}, DIGITS_RUN)
    assert reason.at("regularizer.elr") == "regularizer.elr.lam=0.0 adds nothing to the cross-entropy"
    [reason] = regularizer_run_check("dropout", {"rate": 0}, DIGITS_RUN)
    assert reason.at("regularizer.dropout") == "regularizer.dropout.rate=0 never drops a unit"


def test_coteaching_whose_forget_rate_ramp_outlasts_the_run_is_reported_with_the_rate_it_reaches():
    # R(T) = 1 - min(T / 10 * 0.2, 0.2): the last of 3 epochs (T = 2) forgets 2 / 10 * 0.2 = 0.04.
    params = {"forget_rate": 0.2, "num_gradual": 10, "schedule": "paper"}
    [reason] = regularizer_run_check("coteaching", params, run_of(3))
    assert reason.key == "num_gradual" and "reaches only 0.04, not forget_rate=0.2" in reason.why
    assert regularizer_run_check("coteaching", params, run_of(10)) == []  # the ramp fits the run


@pytest.mark.parametrize("epochs,inactive", [(1, True), (4, True), (5, False), (10, False)])
def test_swa_averaging_a_single_epoch_is_reported(epochs, inactive):
    # floor(0.75 * E) is the first averaged epoch: E = 4 averages epoch 3 only, E = 5 epochs 3 and 4.
    reasons = regularizer_run_check("swa", {"start": 0.75}, run_of(epochs))
    assert bool(reasons) == inactive
    if epochs == 1:
        assert "averages only the run's single epoch" in reasons[0].why


# --- regularizers: refused -------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,shape,message", [
    (16, DIGITS_RUN, "a hole of 16 pixels is as wide as the 8x8 images and can blank them entirely; allowed on 8x8 "
                     "images: 2..7 pixels, or a fraction of the side such as 0.5"),
    (8, DIGITS_RUN, "a hole of 8 pixels is as wide as the 8x8 images"),
    (0.1, DIGITS_RUN, "a hole of 0.1 x 8 = 1 pixels cuts nothing"),
    (0.99, CIFAR_RUN, "a hole of 0.99 x 32 = 32 pixels is as wide as the 32x32 images"),
])
def test_a_cutout_hole_that_cuts_nothing_or_covers_the_image_is_refused(length, shape, message):
    with pytest.raises(ParamError) as err:
        regularizer_run_check("cutout", {"length": length, "n_holes": 1}, shape)
    assert str(err.value).startswith(f"length={length!r} is invalid: {message}")


@pytest.mark.parametrize("length", [1, 0, 1.0, 1.5, -0.5, True])
def test_a_cutout_length_that_is_neither_pixels_nor_a_fraction_is_refused(length):
    with pytest.raises(UserError, match=r"regularizer.cutout.length=.* is invalid: must be an integer >= 2 \(pixels\) "
                                        r"or a float in \(0, 1\) \(a fraction of the image side\)"):
        create_regularizer("cutout", length=length, n_holes=1)


@pytest.mark.parametrize("length,side,pixels", [(0.5, 8, 4), (0.5, 32, 16), (0.25, 32, 8), (6, 8, 6)])
def test_cutout_fraction_is_taken_of_the_image_side(length, side, pixels):
    reg = create_regularizer("cutout", length=length, n_holes=1, seed=0)
    images = torch.ones(256, 1, side, side)
    erased = (reg.mix_batch(images, torch.zeros(256, 10), None)[0] == 0).flatten(1).sum(dim=1)
    assert int(erased.max()) == pixels * pixels  # a hole fully inside the image
    assert bool((erased <= pixels * pixels).all())


def test_ema_whose_window_outlasts_the_run_is_refused_and_warmup_fits_it():
    # decay 0.999: a window of 1 / (1 - 0.999) = 1000 steps > 200; the first step's weights keep 0.999 ** 199 = 82%.
    with pytest.raises(ParamError) as err:
        regularizer_run_check("ema", {"decay": 0.999, "warmup": False}, DIGITS_RUN)
    assert str(err.value) == (
        "decay=0.999 is invalid: it averages over about 1000 steps (1 / (1 - decay)), more than the run's 200 steps "
        "(10 epochs of 20): the evaluated weights would still be 82% those after the first step; use decay <= 0.995 "
        "or warmup=true")
    assert regularizer_run_check("ema", {"decay": 0.995, "warmup": False}, DIGITS_RUN) == []
    # With timm's warmup the decay at step 200 is 1 - 200 ** (-2/3) = 0.971: a window of 34 steps.
    assert regularizer_run_check("ema", {"decay": 0.999, "warmup": True}, DIGITS_RUN) == []


def test_label_smoothing_of_one_is_refused():
    with pytest.raises(UserError, match=r"regularizer.label_smoothing.eps=1.0 is invalid: must be in \[0, 1\) "
                                        r"\(1 would make every target uniform"):
        create_regularizer("label_smoothing", eps=1.0)


# --- norms -----------------------------------------------------------------------------------------------------
def norm_check(name: str, shape: RunShape = DIGITS_RUN, **params) -> list[Inactive]:
    return NORM_RUN_CHECKS[name](params, shape)


@pytest.mark.parametrize("setting,inactive", [(128, True), (32, False), (33, True), (0.25, False), (0.6, True)])
def test_ghost_batchnorm_with_one_virtual_batch_per_batch_is_reported(setting, inactive):
    # floor(64 / size) virtual batches: 128 -> 0, 33 -> 1, 0.6 x 64 = 38 -> 1 (plain BN); 32 -> 2, 0.25 -> 16 -> 4.
    reasons = norm_check("ghost_batchnorm", virtual_batch_size=setting)
    assert bool(reasons) == inactive
    if setting == 0.6:
        assert reasons[0].why.startswith("(38 samples) is more than half of data.batch_size=64")


@pytest.mark.parametrize("setting,message", [
    (0.01, "gives virtual batches of 1 samples at data.batch_size=64; batch statistics need at least 2"),
    (1, "must be an integer >= 2 (samples) or a float in (0, 1) (a fraction of data.batch_size)"),
    (1.0, "must be an integer >= 2 (samples) or a float in (0, 1) (a fraction of data.batch_size)"),
])
def test_ghost_batches_below_two_samples_are_refused(setting, message):
    with pytest.raises(ParamError, match=None) as err:
        norm_check("ghost_batchnorm", virtual_batch_size=setting)
    assert str(err.value) == f"virtual_batch_size={setting!r} is invalid: {message}"


@pytest.mark.parametrize("setting,inactive", [(4000, True), (200, True), (199, False), (0, False), (0.1, False),
                                              (0.999, True)])
def test_powernorm_whose_warmup_covers_the_run_is_reported(setting, inactive):
    # 0.999 x 200 rounds to 200 steps: the whole run.
    assert bool(norm_check("powernorm", warmup_iters=setting)) == inactive


@pytest.mark.parametrize("setting,window,inactive", [(4000, 4, True), (200, 4, True), (199, 4, False),
                                                     (0, 200, True), (0, 199, False), (0.1, 4, False)])
def test_unified_norm_whose_warmup_or_window_covers_the_run_is_reported(setting, window, inactive):
    # Smoothing starts after max(warmup_iters, window) of the 200 steps.
    reasons = norm_check("unified_norm", warmup_iters=setting, window=window)
    assert bool(reasons) == inactive
    if inactive:
        assert reasons[0].at("norm").startswith(f"norm.warmup_iters={setting!r} ")
        assert "neither fluctuation smoothing nor outlier filtration ever acts" in reasons[0].why


@pytest.mark.parametrize("momentum,inactive", [(0.0, True), (0.001, True), (0.005, False), (0.1, False)])
def test_bcn_batch_stage_that_never_settles_is_reported(momentum, inactive):
    # The estimates move over about 1 / momentum steps: 1000 > 200 steps, 200 is not.
    assert bool(norm_check("bcn_ws", momentum=momentum)) == inactive


@pytest.mark.parametrize("name", ["batchnorm", "ws_batchnorm", "bn_only", "ghost_batchnorm", "evonorm_b0"])
def test_running_statistics_that_never_update_are_refused(name):
    with pytest.raises(UserError, match=r"norm.momentum=0.0 is invalid: must be in \(0, 1\] \(0 never updates the "
                                        r"running statistics"):
        norm_layer_from_config({"name": name, "momentum": 0.0})


def test_run_relative_norm_settings_are_made_absolute_for_the_run():
    ghost = norm_layer_from_config({"name": "ghost_batchnorm", "virtual_batch_size": 0.25}, DIGITS_RUN)
    assert ghost(8).virtual_batch_size == 16
    assert norm_layer_from_config({"name": "ghost_batchnorm", "virtual_batch_size": 0.25}, CIFAR_RUN)(8) \
        .virtual_batch_size == 128  # the paper's ghost batch at the CIFAR configs' batch of 512
    powernorm = norm_layer_from_config({"name": "powernorm", "warmup_iters": 0.1}, DIGITS_RUN)
    assert powernorm(8).warmup_iters == 20 and powernorm.tokens(8).warmup_iters == 20
    assert norm_layer_from_config({"name": "powernorm", "warmup_iters": 8000}, DIGITS_RUN)(8).warmup_iters == 8000


# --- schedules -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SCHEDULE_RUN_CHECKS))
@pytest.mark.parametrize("warmup_epochs,inactive", [(10, True), (12, True), (9.95, False), (0, False)])
def test_a_warmup_covering_the_run_is_reported(name, warmup_epochs, inactive):
    # round(9.95 x 20) = 199 warmup steps leave the last of the 200 steps; 10 epochs are all 200.
    assert bool(SCHEDULE_RUN_CHECKS[name]({"warmup_epochs": warmup_epochs}, DIGITS_RUN)) == inactive


# --- the run's list ----------------------------------------------------------------------------------------------
def test_inactive_components_name_the_component_and_its_full_key():
    cfg = {"norm": {"name": "powernorm", "warmup_iters": 4000}, "sched": {"name": "cosine", "warmup_epochs": 0},
           "regularizer": {"label_smoothing": {"eps": 0.0}}}
    assert inactive_components(cfg, DIGITS_RUN) == [
        {"component": "regularizer=label_smoothing",
         "reason": "regularizer.label_smoothing.eps=0.0 leaves the targets one-hot"},
        {"component": "norm=powernorm",
         "reason": "norm.warmup_iters=4000 covers the run's 200 steps (10 epochs of 20): every step normalizes by "
                   "the batch's own quadratic mean, so the running statistic and the approximate backward never "
                   "train"}]


def test_a_refusal_names_the_full_key_in_one_line():
    cfg = {"norm": {"name": "batchnorm"}, "sched": {"name": "cosine", "warmup_epochs": 0},
           "regularizer": {"cutout": {"length": 16, "n_holes": 1}}}
    with pytest.raises(UserError) as err:
        inactive_components(cfg, DIGITS_RUN)
    assert str(err.value).startswith("regularizer.cutout.length=16 is invalid: a hole of 16 pixels is as wide")
    assert "\n" not in str(err.value)


def test_a_run_check_for_an_undeclared_component_fails_at_import(monkeypatch):
    """A misspelt name in the tables would leave its component unchecked: run_checks refuses it when imported."""
    monkeypatch.setitem(run_checks.REGULARIZER_RUN_CHECKS, "cutuot", run_checks.cutout_run)
    with pytest.raises(TypeError, match=r"run checks for undeclared regularizers \['cutuot'\]"):
        run_checks.check_run_tables()
    monkeypatch.delitem(run_checks.REGULARIZER_RUN_CHECKS, "cutuot")
    monkeypatch.setitem(run_checks.NORM_RUN_CHECKS, "groupnrom", run_checks.bcn_estimates_run)
    with pytest.raises(TypeError, match=r"run checks for undeclared norms \['groupnrom'\]"):
        run_checks.check_run_tables()
