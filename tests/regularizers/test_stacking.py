"""Which regularizers stack, and the one-line refusals for those that do not."""
import pytest

from regbench.errors import UserError
from regbench.regularizers import build_regularizers

CFGS = {
    "mixup": {"alpha": 0.2, "prob": 1.0},
    "cutmix": {"alpha": 1.0, "prob": 1.0},
    "mixup_cutmix": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5,
                     "label_smoothing": 0.1},
    "rankmixup": {"variant": "mrl", "mixup_alpha": 2.0, "loss_weight": 0.1, "margin": 2.0, "num_mixes": 1},
    "cutout": {"length": 4, "n_holes": 1},
    "label_smoothing": {"eps": 0.1},
    "dropout": {"rate": 0.5},
    "alpha_dropout": {"rate": 0.05},
    "multisample_dropout": {"rate": 0.5, "num_samples": 8},
    "nested_dropout": {"mu": 0.0, "sigma": 10.0},
    "droppath": {"drop_prob": 0.5},
}


def build(*names, **overrides):
    return build_regularizers({n: dict(CFGS[n], **overrides.get(n, {})) for n in names}, seed=0)


@pytest.mark.parametrize("names", [
    ("cutmix", "label_smoothing"),
    ("mixup", "cutout"),
    ("rankmixup", "cutout", "label_smoothing"),
    ("mixup_cutmix", "droppath", "dropout"),
    ("cutmix", "multisample_dropout", "droppath"),
])
def test_sensible_stacks_build(names):
    assert [r.name for r in build(*names)] == list(names)


def test_mixup_cutmix_without_smoothing_stacks_with_label_smoothing():
    build("mixup_cutmix", "label_smoothing", mixup_cutmix={"label_smoothing": 0.0})


@pytest.mark.parametrize("names,message", [
    (("mixup", "cutmix"), "mixup and cutmix both do input mixing"),
    (("mixup_cutmix", "mixup"), "mixup_cutmix and mixup both do input mixing"),
    (("rankmixup", "cutmix"), "rankmixup and cutmix both do input mixing"),
    (("cutmix", "cutout"), "cutmix and cutout both do regional dropout"),
    (("cutout", "mixup_cutmix"), "cutout and mixup_cutmix both do regional dropout"),
    (("mixup_cutmix", "label_smoothing"), "mixup_cutmix and label_smoothing both do label smoothing"),
    (("dropout", "multisample_dropout"), "dropout and multisample_dropout both do penultimate-feature dropout"),
    (("nested_dropout", "alpha_dropout"), "nested_dropout and alpha_dropout both do penultimate-feature dropout"),
])
def test_nonsense_stacks_are_refused_in_one_line(names, message):
    with pytest.raises(UserError) as err:
        build(*names)
    assert str(err.value) == f"regularizer=[{','.join(names)}]: {message}; keep only one of them"
