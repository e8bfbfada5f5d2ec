"""Every config in conf/ composes and validates; the package ships every subpackage and config."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict

from image_trees import write_class_folders, write_imagenet, write_tiny_imagenet
from regbench.config.validate import validate_config
from regbench.sweeps.preflight import GROUPS, group_options, preflight

CONF = Path(__file__).resolve().parents[2] / "conf"
# Presets added with `+group=name` have tests of their own (exp below, sweep and hparams_search in tests/sweeps).
SELECTABLE = [g for g in GROUPS if g not in ("exp", "sweep", "hparams_search")]
# Options that only fit some partners are validated with one (the compatibility rules have their own tests).
PARTNERS = {("backbone", "vit_tiny"): ["norm=layernorm"], ("norm", "selu"): ["backbone=mlp"],
            ("norm", "crmsnorm"): ["backbone=vit_tiny"],
            ("regularizer", "transmix"): ["backbone=vit_tiny", "norm=layernorm", "backbone.pool=cls"],
            # Its forget rate is the noise rate: clean labels leave it nothing to forget.
            ("regularizer", "coteaching"): ["data.noise.type=symmetric", "data.noise.rate=0.2"],
            ("regularizer", "ipr_pruning"): ["data=modular", "backbone=quadratic_mlp", "norm=none"]}
# The folder datasets read their files' listing before a run: each is validated on a generated tree.
FOLDER_TREES = {"image_folder": write_class_folders, "tiny_imagenet": write_tiny_imagenet,
                "imagenet": write_imagenet}


def composed(overrides: list[str]) -> dict:
    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.run_dir = "unused"
    return OmegaConf.to_container(cfg, resolve=True)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in SELECTABLE for o in options(g)])
def test_every_group_option_composes_and_validates(group, option, tmp_path, absent_data_files):
    value = f"[{option}]" if group == "regularizer" else option
    partners = PARTNERS.get((group, option), [])
    if group == "data" and option in FOLDER_TREES:
        FOLDER_TREES[option](tmp_path, 6)
        partners = [f"data.root={tmp_path}", "data.batch_size=2"]
    cfg = composed([f"{group}={value}", *partners])
    assert validate_config(cfg) == []  # its defaults act on the default data
    assert absent_data_files == [cfg["data"]["name"]]
    if group == "regularizer":
        assert list(cfg["regularizer"]) == ([] if option == "none" else [option])
    elif "name" in cfg[group]:
        assert cfg[group]["name"] == option


LABEL_SHIFT = ("holdout_classes", "noise", "imbalance", "balance", "prune")


@pytest.mark.parametrize("dataset", options("data"))
def test_every_dataset_takes_the_label_shift_sections_from_their_one_definition(dataset):
    own = OmegaConf.load(CONF / "data" / f"{dataset}.yaml")
    assert not set(LABEL_SHIFT) & set(own), "defined in conf/data/common/label_shift.yaml only"
    common = OmegaConf.to_container(OmegaConf.merge({"seed": 7}, {"data": OmegaConf.load(
        CONF / "data" / "common" / "label_shift.yaml")}), resolve=True)["data"]
    cfg = composed([f"data={dataset}", "seed=7", "data.noise.rate=0.3"])
    assert {k: cfg["data"][k] for k in LABEL_SHIFT} == {**common, "noise": {**common["noise"], "rate": 0.3}}
    assert cfg["data"]["name"] == dataset


@pytest.mark.parametrize("dataset", options("data"))
def test_every_dataset_takes_the_sampler_from_its_one_definition(dataset):
    own = OmegaConf.load(CONF / "data" / f"{dataset}.yaml")
    assert not {"sampler", "rs2"} & set(own), "defined in conf/data/common/sampler.yaml only"
    common = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "common" / "sampler.yaml"))
    cfg = composed([f"data={dataset}"])
    assert {key: cfg["data"][key] for key in ("sampler", "rs2")} == common
    assert common["sampler"] == "full"


@pytest.mark.parametrize("preset", options("exp"))
def test_every_experiment_preset_composes_and_overrides_only_what_it_changes(preset):
    text = (CONF / "exp" / f"{preset}.yaml").read_text()
    assert text.startswith("# @package _global_")
    cfg = composed([f"+exp={preset}"])
    assert validate_config(cfg) == []  # the preset acts on the default data
    assert cfg["exp_name"] == preset
    base = composed([])
    changed = {k for k in base if base[k] != cfg[k]}
    # eval: a preset may add the evaluation its technique is judged by (MixOE's OOD detection, a trained OOD
    # method's own score).
    assert changed <= {"exp_name", "regularizer", "data", "norm", "backbone", "optim", "sched", "trainer", "eval"}


def test_regularizers_stack_in_list_order():
    cfg = composed(["regularizer=[cutmix,label_smoothing,dropout]"])
    assert list(cfg["regularizer"]) == ["cutmix", "label_smoothing", "dropout"]


@pytest.mark.parametrize("group", ["data", "backbone", "norm", "regularizer"])
def test_every_component_config_cites_its_source_in_a_comment(group):
    for path in (CONF / group).glob("*.yaml"):
        assert path.read_text().lstrip().startswith("#"), f"{path} has no leading comment"


def test_pyproject_lists_every_subpackage():
    pyproject = tomllib.loads((CONF.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {"regbench." + p.parent.name for p in (CONF.parent / "regbench").glob("*/__init__.py")}
    assert on_disk | {"regbench", "regbench.conf"} <= listed


@pytest.mark.parametrize("group,preset", [(g, p) for g in ("exp", "hparams_search") for p in options(g)])
def test_every_preset_passes_preflight_beside_a_key_override_that_adds(group, preset):
    """The keys a preset sets (exp_name, optimized_metric, norm.placement, ...) are known keys: the check of
    added keys reads them from the base config, which the preset is part of. (The sweep presets' every job goes
    through preflight in tests/sweeps/test_sweep_presets.py.)"""
    # RCAL's two phases need an epoch each: with its default 0.2 of the epochs, 5 epochs.
    epochs = 5 if (group, preset) == ("exp", "rcal") else 1
    preflight([f"+{group}={preset}", f"++trainer.max_epochs={epochs}"], multirun=False, writes=False)


@pytest.mark.parametrize("dataset", options("data"))
def test_every_dataset_takes_crafted_validation_from_its_one_definition(dataset):
    own = OmegaConf.load(CONF / "data" / f"{dataset}.yaml")
    assert "crafted_val" not in own, "defined in conf/data/common/crafted_val.yaml only"
    common = OmegaConf.to_container(OmegaConf.merge({"seed": 7}, {"data": OmegaConf.load(
        CONF / "data" / "common" / "crafted_val.yaml")}), resolve=True)["data"]
    cfg = composed([f"data={dataset}", "seed=7"])
    assert cfg["data"]["crafted_val"] == common["crafted_val"]
    assert common["crafted_val"]["shifts"] == []  # off unless asked for


def test_train_help_lists_each_groups_options_as_hydra_composes_them(capsys):
    from regbench.run.cli import PRESET_GROUPS, SELECTED_GROUPS, main, options

    with initialize_config_module("regbench.conf", version_base="1.3"):
        for group in (*SELECTED_GROUPS, *PRESET_GROUPS):
            assert options(group) == group_options(group), group
        assert set(options("hydra/launcher")) < set(group_options("hydra/launcher"))
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert all(f"  {group}: {', '.join(options(group))}" in shown for group in (*SELECTED_GROUPS, *PRESET_GROUPS))
