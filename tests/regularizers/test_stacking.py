"""Which regularizers stack, and the one-line refusals for those that do not."""
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from regbench.errors import UserError
from regbench.regularizers import build_regularizers
from regbench.specs.regularizers import INCOMPATIBLE, REGULARIZERS, check_exclusion_tables

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


def every_regularizers_params() -> dict:
    """Each regularizer's params as its conf/regularizer YAML gives them on the default run (digits)."""
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"regularizer=[{','.join(REGULARIZERS.names())}]",
                                           "regularizer.coteaching.forget_rate=0.2"])
    return OmegaConf.to_container(cfg.regularizer, resolve=True)


def test_every_declared_incompatible_pair_is_refused_in_one_line_in_either_order():
    params = every_regularizers_params()
    pairs = [(name, other, why) for name, others in INCOMPATIBLE.items() for other, why in others.items()]
    assert len(pairs) >= 12
    for name, other, why in pairs:
        for order in ((name, other), (other, name)):
            with pytest.raises(UserError) as err:
                build_regularizers({n: params[n] for n in order}, seed=0)
            assert str(err.value) == f"regularizer={name} cannot be stacked with {other}: {why}"


def test_an_incompatible_name_that_is_not_a_registered_regularizer_is_refused(monkeypatch):
    monkeypatch.setitem(INCOMPATIBLE, "sade", {"rcal": "fine", "rcall": "misspelt"})
    with pytest.raises(TypeError, match=r"^INCOMPATIBLE\['sade'\] names unregistered regularizers \['rcall'\]; "
                                        r"registered: abet, alpha_dropout, "):
        check_exclusion_tables()
