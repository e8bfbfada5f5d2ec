"""Every claim card loads, and its quick and paper sweeps compose and validate job by job (as `regbench
reproduce` checks them before any job starts); card mistakes and arm configs."""
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CARD
from hydra import initialize_config_module

from regbench.claims.arms import arm_config, conf_groups
from regbench.claims.card import MIN_SEEDS, SCALES, card_names, cards_dir, load_card, parse_card
from regbench.claims.plan import make_plan, prepare
import regbench.sweeps.preflight
from regbench.sweeps.preflight import preflight, sweep_jobs
from hydra.core.override_parser.overrides_parser import OverridesParser
from regbench.errors import UserError

# The metrics a card may judge: what every run's metrics.json has, plus the long-tail runs' balanced accuracy and
# SADE's accuracy on a backward long-tailed test set, the coloured datasets' minority-subpopulation accuracy, and
# eval=[ood]'s AUROCs: MixOE's MSP, energy (AbeT's own score in its arm), a trained OOD method's own score
# (`method`), the Mahalanobis ensemble's against held-out classes.
METRICS = {"test_acc", "test_nll", "test_ece", "best_test_acc", "best_val_acc", "val_acc", "train_loss",
           "balanced_acc", "sade_backward_acc", "test_minority_acc", "ood.mnist.msp.test_auroc",
           "ood.synthetic.energy.test_auroc", "ood.synthetic.method.test_auroc",
           "ood.heldout.mahalanobis_ensemble.test_auroc"}
# Seed papers whose techniques regbench implements, each with a card.
SEED_TECHNIQUES = {"multisample_dropout", "nested_dropout", "elr", "coteaching", "cutmix", "rankmixup", "transmix",
                   "layernorm", "powernorm", "evonorm_b0", "evonorm_s0", "bcn_ws", "selu", "bn_only", "mix_ln",
                   "peri_ln", "ln_scaling", "sgdp", "upsample_upweight", "cooldown", "nap",
                   "weight_compander", "unified_norm", "batchformer", "sade", "rs2", "subpopulations", "storm",
                   "dropblock", "noise_mask", "rcal", "smote", "mixoe", "palm", "mahalanobis_ensemble",
                   "class_gmm", "abet"}
# Multi-run procedures, as procedure cards (steps, then arms read from their outputs): Data Diet, model soups,
# concatenated representations and Nested Co-teaching's stage 2.
PROCEDURES = {"data_diet", "model_soups", "concat_representations", "nested_coteaching"}
CLASSIC_CARDS = sorted(set(card_names()) - PROCEDURES)


@pytest.fixture
def datasets_listed(monkeypatch, absent_data_files) -> list[str]:
    """The datasets a sweep's preflight would load, listed instead (their files are not looked for either): the
    paper-scale cards train on datasets this machine does not have, and these tests check the cards' configs."""
    listed = []
    monkeypatch.setattr(regbench.sweeps.preflight, "check_sweep_data",
                        lambda jobs: listed.extend(config["data"]["name"] for _, config in jobs))
    return listed


def test_every_seed_technique_has_a_card():
    assert set(card_names()) == SEED_TECHNIQUES | PROCEDURES
    assert {name for name in card_names() if load_card(name).is_procedure} == PROCEDURES


@pytest.mark.parametrize("name", card_names())
def test_card_is_complete_and_cites_its_paper(name):
    card = load_card(name)
    assert (cards_dir() / f"{name}.yaml").read_text().startswith("# ")  # the paper and the claim, in words
    assert card.metric in METRICS and card.paper_result.source
    assert len(card.scales["quick"].seeds) >= MIN_SEEDS["quick"]
    if card.is_procedure:
        assert card.step_arms["baseline"] != card.step_arms["treatment"]
    else:
        assert card.arm_overrides["baseline"] != card.arm_overrides["treatment"]


@pytest.mark.parametrize(("name", "scale"), [(name, scale) for name in sorted(PROCEDURES) for scale in SCALES])
def test_the_first_steps_of_every_procedure_card_validate(tmp_path, name, scale, datasets_listed):
    """The train steps that need no earlier step's output, every job as reproduce checks them before the steps;
    the later steps' inputs exist only once the earlier steps have run (the e2e test runs a procedure card)."""
    from regbench.claims.procedure import preflight_steps

    plan = make_plan(load_card(name), scale, tmp_path, [])
    prepare(plan)
    preflight_steps(plan)


@pytest.mark.parametrize(("name", "scale"), [(name, scale) for name in CLASSIC_CARDS for scale in SCALES])
def test_every_job_of_every_card_validates(tmp_path, name, scale, datasets_listed):
    plan = make_plan(load_card(name), scale, tmp_path, [])
    prepare(plan)
    overrides = plan.train_args()[1:]  # without -m
    with initialize_config_module("regbench.conf", version_base="1.3"):
        jobs = sweep_jobs(overrides, OverridesParser.create().parse_overrides(overrides))
    assert len(jobs) == 2 * len(plan.seeds)
    # Every seed repeats the same two arm configs: preflight composes and validates the jobs of one seed, as
    # reproduce does for every job before launching (the card tests check the seed lists).
    one_seed = [override for override in overrides if not override.startswith("seed=")] + [f"seed={plan.seeds[0]}"]
    arms = [job.config for job in preflight(one_seed, multirun=True)]
    assert len(arms) == 2 and datasets_listed == [arm["data"]["name"] for arm in arms]  # both would be loaded
    # The arms differ, and only where the card says they do.
    assert arms[0] != arms[1] and {arm["exp_name"] for arm in arms} == {f"claim_{name}"}
    if scale == "quick":
        assert arms[0]["data"]["name"] in ("digits", "mnist", "colored_digits")


def card_text(**changes) -> dict:
    raw = yaml.safe_load(TINY_CARD.read_text())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = raw
        for part in path:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return raw


@pytest.mark.parametrize(("changes", "message"), [
    ({"colour": "red"}, "colour is not a card key; allowed: baseline, claim, metric, paper, paper_result, scales, "
                        "steps"),
    ({"metric": None}, "the card lacks metric"),
    ({"scales__quick__seeds": [0, 1, 2]}, "scales.quick.seeds=[0, 1, 2] is invalid: must list at least 5 distinct"),
    ({"scales__paper__seeds": [1, 1]}, "scales.paper.seeds=[1, 1] is invalid: must list at least 2 distinct"),
    ({"scales__huge": {"seeds": [0, 1], "overrides": []}}, "scales.huge is not a card key; allowed: paper, quick"),
    ({"treatment__overrides": "regularizer=[mixup]"}, "treatment.overrides='regularizer=[mixup]' is invalid: must be"),
    ({"paper_result__baseline": "high"}, "paper_result.baseline='high' is invalid: must be a number"),
    ({"scales__quick__arm_overrides": {"control": ["a=1"]}}, "scales.quick.arm_overrides.control is not a card key"),
])
def test_card_mistakes_are_one_line_naming_the_file_and_key(changes, message):
    with pytest.raises(UserError) as caught:
        parse_card(card_text(**changes), Path("conf/claim/x.yaml"))
    assert str(caught.value).startswith("claim card conf/claim/x.yaml: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_arm_becomes_a_global_config_of_group_choices_and_values():
    config = arm_config(("regularizer=[coteaching]", "regularizer.coteaching.forget_rate=0.45", "+exp=cutmix",
                         "data.balance.tau=inf"), conf_groups(), "arm")
    assert config == {"defaults": [{"override /regularizer": ["coteaching"]}, {"/exp": "cutmix"}, "_self_"],
                      "regularizer": {"coteaching": {"forget_rate": 0.45}}, "data": {"balance": {"tau": float("inf")}}}
    assert "claim" not in conf_groups() and {"data", "norm", "regularizer", "exp"} <= conf_groups()


@pytest.mark.parametrize("override", ["norm=batchnorm,groupnorm", "~data.noise", "hydra/launcher=slurm"])
def test_arms_refuse_sweeps_deletions_and_hydra_groups(override):
    with pytest.raises(UserError, match="is not allowed in an arm"):
        arm_config((override,), conf_groups(), "arm")


def test_user_seeds_replace_the_cards_and_may_only_grow_in_a_directory(tmp_path):
    card = load_card(str(TINY_CARD))
    plan = make_plan(card, "quick", tmp_path, ["seed=range(0,3)", "trainer.max_epochs=2"])
    assert plan.seeds == (0, 1, 2) and plan.user_overrides == ("trainer.max_epochs=2",)
    assert plan.sweep_dir == tmp_path / "tiny" / "quick"
    prepare(plan)
    from regbench.claims.plan import record_plan

    record_plan(plan)
    prepare(make_plan(card, "quick", tmp_path, ["seed=0,1,2,3,4", "trainer.max_epochs=2"]))  # grows: fine
    with pytest.raises(UserError, match=r"seeds \[0, 1, 2\]; the seed list may only grow at its end"):
        prepare(make_plan(card, "quick", tmp_path, ["seed=1,2,3", "trainer.max_epochs=2"]))
    with pytest.raises(UserError, match="holds a reproduction whose baseline ran"):
        prepare(make_plan(card, "quick", tmp_path, ["seed=0,1,2"]))
