"""The registries' declared entries (regbench.specs, torch-free) against the factories that fulfil them, and the one
set of exclusive tags."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from regbench.loggers import LOGGERS
from regbench.registry import OPTIONAL, REQUIRED, Entry, Registry, config_parameters
from regbench.specs.backbones import BACKBONES
from regbench.specs.calibration import CALIBRATORS
from regbench.specs.data import DATASETS
from regbench.specs.evaluation import EVALUATIONS, OOD_METHODS
from regbench.specs.norms import NORMS
from regbench.specs.optim import OPTIMIZERS, SCHEDULES
from regbench.specs.regularizers import EXCLUSIVE_TAGS, REGULARIZERS, Exclusion

REGISTRIES = (DATASETS, BACKBONES, NORMS, REGULARIZERS, CALIBRATORS, EVALUATIONS, OPTIMIZERS, SCHEDULES,
              LOGGERS)
HEAVY = ("torch", "lightning", "wandb", "timm")


@pytest.mark.parametrize("registry,name", [(r, n) for r in REGISTRIES for n in r.names()],
                         ids=lambda x: x.family if isinstance(x, Registry) else x)
def test_every_declared_entry_resolves_to_a_factory_that_reads_its_declared_parameters(registry, name):
    factory = registry.get(name)
    assert factory.__module__ == registry.entry(name).module
    assert config_parameters(factory, registry.context) == dict(registry.entry(name).params)


def test_each_familys_modules_register_nothing_undeclared():
    # Every declared module, as a run imports them lazily: the test must not depend on what other tests imported.
    for registry in REGISTRIES:
        for name in registry.names():
            importlib.import_module(registry.entry(name).module)
    import regbench.calibration, regbench.data, regbench.evaluation, regbench.norms, regbench.optim  # noqa: F401, E401
    import regbench.regularizers  # noqa: F401

    for registry in REGISTRIES:
        assert sorted(registry._factories) == registry.names()


def sgd_like(model, *, lr: float, momentum: float = 0.9):
    return lr, momentum


def test_a_registration_that_drifts_from_its_declaration_is_refused():
    declared = Registry("optimizer", "optim", context=("model",), entries={
        "sgd": Entry(__name__, {"lr": REQUIRED, "momentum": OPTIONAL}),
        "moved": Entry("regbench.optim", {"lr": REQUIRED, "momentum": OPTIONAL}),
        "drifted": Entry(__name__, {"lr": REQUIRED, "momentum": REQUIRED})})
    declared.register("sgd")(sgd_like)
    assert declared.get("sgd") is sgd_like and declared.entry("sgd").params["momentum"] == OPTIONAL
    with pytest.raises(ValueError, match="registered twice"):
        declared.register("sgd")(sgd_like)
    with pytest.raises(ValueError, match=r"'sgdd' is not declared; declare it beside the others \(drifted, moved, sgd"):
        declared.register("sgdd")(sgd_like)
    with pytest.raises(ValueError, match=r"'moved' is declared in regbench.optim but registered in tests?"):
        declared.register("moved")(sgd_like)
    with pytest.raises(ValueError, match=r"'drifted' is declared with parameters .* but its factory reads"):
        declared.register("drifted")(sgd_like)


def test_an_exclusive_tag_outside_the_declared_set_or_an_undeclared_name_is_refused(monkeypatch):
    from regbench.specs import regularizers as specs

    monkeypatch.setitem(specs.EXCLUSIVE_TAGS, "cutout", ("input mixng",))
    with pytest.raises(TypeError, match=r"cutout.exclusive must be a tuple of Exclusion members \(INPUT_MIXING, "):
        specs.check_exclusion_tables()
    monkeypatch.setitem(specs.EXCLUSIVE_TAGS, "cutout", Exclusion.INPUT_MIXING)
    with pytest.raises(TypeError, match=r"cutout.exclusive must be a tuple"):
        specs.check_exclusion_tables()
    monkeypatch.setitem(specs.EXCLUSIVE_TAGS, "cutout", (Exclusion.REGIONAL_DROPOUT,))
    monkeypatch.setitem(specs.EXCLUSIVE_TAGS, "cutuot", (Exclusion.REGIONAL_DROPOUT,))
    with pytest.raises(TypeError, match=r"exclusions name undeclared regularizers \['cutuot'\]"):
        specs.check_exclusion_tables()


def test_the_trained_ood_methods_are_exactly_the_regularizers_tagged_as_one():
    # eval=[ood]'s `method` score is allowed for OOD_METHODS and read from the regularizer tagged OOD_METHOD
    tagged = [name for name, tags in EXCLUSIVE_TAGS.items() if Exclusion.OOD_METHOD in tags]
    assert sorted(tagged) == sorted(OOD_METHODS)


def test_stacked_regularizers_sharing_a_declared_tag_are_refused():
    from regbench.errors import UserError
    from regbench.regularizers import build_regularizers

    with pytest.raises(UserError, match=r"^regularizer=\[ema,coteaching\]: ema and coteaching both do "
                                        r"evaluated-network selection; keep only one of them$"):
        build_regularizers({"ema": {"decay": 0.99}, "coteaching": {"forget_rate": 0.2, "num_gradual": 10,
                                                                     "schedule": "paper"}}, seed=0)


def test_the_specs_and_the_config_checks_import_no_torch():
    code = ("import sys, regbench.specs.backbones, regbench.specs.data, regbench.specs.norms, regbench.specs.optim, "
            "regbench.specs.regularizers, regbench.specs.calibration, regbench.specs.evaluation, "
            "regbench.config.validate, regbench.config.keys, regbench.sweeps.preflight; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


COMPONENT_REGISTRIES = (DATASETS, BACKBONES, NORMS, REGULARIZERS, CALIBRATORS, EVALUATIONS, OPTIMIZERS, SCHEDULES)


@pytest.mark.parametrize("registry", COMPONENT_REGISTRIES, ids=lambda registry: registry.family)
def test_defaults_live_in_the_yaml_alone(registry):
    """A factory declares no default for a config parameter; the registry's defaults are what its option's YAML
    composes to (a value interpolating the run's config has none outside a run)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    for name in registry.names():
        assert set(config_parameters(registry.get(name), registry.context).values()) <= {REQUIRED}, name
        option = f"[{name}]" if registry.config_key in ("regularizer", "calibrate", "eval") else name
        with initialize_config_module("regbench.conf", version_base="1.3"):
            composed = compose("config", overrides=[f"{registry.config_key}={option}"])
        section = OmegaConf.to_container(composed[registry.config_key], resolve=False)
        section = section.get(name, section) if registry.config_key in ("regularizer", "calibrate", "eval") else section
        literal = {key: value for key, value in section.items() if key in registry.entry(name).params
                   and "${" not in str(value)}
        assert registry.defaults(name) == literal, name


def test_a_python_caller_gets_the_yamls_defaults():
    from regbench.regularizers import create_regularizer

    assert create_regularizer("ema", decay=0.9).warmup is True  # conf/regularizer/ema.yaml (the code's was false)
    assert NORMS.with_defaults("groupnorm", {"eps": 1e-3}) == {"groups": 32, "eps": 1e-3}
    BACKBONES.defaults("convnet")["widths"].append(1)  # a caller's change to its copy is not the next caller's
    assert BACKBONES.defaults("convnet") == {"widths": [32, 64, 128]}
    assert "test_imbalance_factor" not in REGULARIZERS.defaults("sade")  # ${data.imbalance.factor}: a run's own
