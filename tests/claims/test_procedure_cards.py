"""Procedure cards: the loader accepts them and refuses malformed ones in one line, the plan fills each step's
placeholders with the seed and the earlier steps' directories, the steps run in order and a relaunch skips the
finished ones, and the arms' values are read from the steps' outputs. No training here (see
test_reproduce_cli.py for the end-to-end run)."""
import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY_PROCEDURE_CARD

from regbench.claims import procedure
from regbench.claims.card import load_card, parse_card
from regbench.claims.plan import make_plan, prepare, record_plan
from regbench.claims.procedure import read_step_values, run_steps, step_command
from regbench.claims.steps import dig, placeholders, substitute
from regbench.errors import ReportedError, UserError

PROCEDURE_CARDS = ("data_diet", "model_soups", "concat_representations", "nested_coteaching")


def raw_card(**changes) -> dict:
    raw = yaml.safe_load(TINY_PROCEDURE_CARD.read_text())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = raw
        for part in path:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    return raw


@pytest.mark.parametrize("name", PROCEDURE_CARDS)
def test_the_shipped_procedure_cards_load_with_steps_and_step_arms(name):
    card = load_card(name)
    assert card.is_procedure and card.arm_overrides == {"baseline": (), "treatment": ()}
    assert {where.step for where in card.step_arms.values()} <= {step.name for step in card.steps}
    assert card.step_arms["baseline"] != card.step_arms["treatment"]


def test_a_card_without_steps_is_a_classic_card():
    assert not load_card("elr").is_procedure and load_card("elr").steps == ()


@pytest.mark.parametrize(("changes", "message"), [
    ({"steps": []}, "steps=[] is invalid: must be a non-empty list of steps"),
    ({"steps__0__command": "fit"}, "steps[0].command='fit' is invalid: allowed: train, score, soup, probe"),
    ({"steps__1__name": "members"}, "steps[1].name='members' is invalid: must differ from the other steps' names"),
    ({"steps__1__name": "dir"}, "steps[1].name='dir' is invalid: must be a lowercase identifier other than seed"),
    ({"steps__0__args": ["init.from={probe}"]},
     "steps[0].args='init.from={probe}' is invalid: {probe} is not a placeholder here; allowed: {seed}, {dir}"),
    ({"steps__0__args": ["hydra.sweep.dir=x"]},
     "steps[0].args='hydra.sweep.dir=x' is invalid: regbench reproduce sets the output place of a train step"),
    ({"steps__1__args": ["{members}", "--out=x"]},
     "steps[1].args='--out=x' is invalid: regbench reproduce sets the output place of a probe step"),
    ({"steps__0__extra": 1}, "steps[0].extra is not a card key; allowed: args, command, name"),
    ({"baseline__step": "fit"}, "baseline.step='fit' is invalid: must name a step: members, probe"),
    ({"treatment__file": "{dir}/probe.json"}, "treatment.file='{dir}/probe.json' is invalid: a JSON file in the"),
    ({"treatment__overrides": ["a=1"]}, "treatment.overrides is not a card key; allowed: file, key, name, step"),
    ({"scales__quick__arm_overrides": {"treatment": ["a=1"]}},
     "scales.quick.arm_overrides is not a card key; allowed: overrides, seeds, step_args"),
    ({"scales__quick__step_args": {"fit": ["a=1"]}}, "scales.quick.step_args.fit is not a card key; allowed: members"),
    ({"scales__quick__step_args": {"members": "a=1"}},
     "scales.quick.step_args.members='a=1' is invalid: must be a list of command-line arguments"),
])
def test_malformed_procedure_cards_are_one_line_naming_the_file_and_key(changes, message):
    with pytest.raises(UserError) as caught:
        parse_card(raw_card(**changes), Path("conf/claim/x.yaml"))
    assert str(caught.value).startswith("claim card conf/claim/x.yaml: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_classic_card_may_not_give_step_args():
    raw = raw_card()
    del raw["steps"]
    raw["baseline"] = raw["treatment"] = {"name": "x", "overrides": ["a=1"]}
    raw["scales"]["quick"]["step_args"] = {}
    with pytest.raises(UserError, match="scales.quick.step_args is not a card key; allowed: arm_overrides"):
        parse_card(raw, Path("x.yaml"))


def test_placeholders_leave_hydra_interpolations_alone():
    text = "init.from=[{stage1}/seed_{seed},x]-${seed}-${data.prune.keep}"
    assert placeholders(text) == ["stage1", "seed"]
    filled = substitute(text, {"stage1": "/r/s1", "seed": "3"})
    assert filled == "init.from=[/r/s1/seed_3,x]-${seed}-${data.prune.keep}"


def test_the_plan_fills_seeds_and_earlier_steps_directories_in_order(tmp_path):
    plan = make_plan(load_card("nested_coteaching"), "quick", tmp_path, ["logger=none", "seed=2,3"])
    seed_dir = (tmp_path / "nested_coteaching" / "quick" / "seed_3").absolute()
    stage1, stage2 = (step_command(plan, 3, step) for step in plan.card.steps)
    assert stage1 == ["train", "-m", "+exp=nested_dropout", "seed=3,103", "data.noise.seed=3",
                      "hydra.sweep.subdir=seed_${seed}", "exp_name=claim_nested_coteaching",
                      "data.noise.type=symmetric",
                      "data.noise.convention=uniform_other", "data.noise.rate=0.4", "logger=none",
                      "trainer.max_epochs=40", f"hydra.sweep.dir={seed_dir / 'stage1'}"]
    assert f"init.from=[{seed_dir}/stage1/seed_3,{seed_dir}/stage1/seed_103]" in stage2
    assert stage2[-2:] == ["trainer.max_epochs=10", f"hydra.sweep.dir={seed_dir / 'stage2'}"]


def test_soup_score_and_probe_steps_get_their_output_place(tmp_path):
    soup = make_plan(load_card("model_soups"), "quick", tmp_path, ["logger=none"])
    seed_dir = (tmp_path / "model_soups" / "quick" / "seed_0").absolute()
    assert step_command(soup, 0, soup.card.steps[2]) == [
        "soup", str(seed_dir / "finetune"), "--recipe", "greedy", "--out", str(seed_dir / "soup")]
    diet = make_plan(load_card("data_diet"), "quick", tmp_path, ["logger=none"])
    score, prune = (step_command(diet, 1, step) for step in diet.card.steps)
    score_dir = (tmp_path / "data_diet" / "quick" / "seed_1" / "score").absolute()
    assert score == ["score", str(score_dir), "seed=101,201", "+exp=data_diet_score", "exp_name=claim_data_diet",
                     "logger=none", "--epochs", "3"]
    assert f"data.prune.scores={score_dir}/scores.json" in prune
    probe = make_plan(load_card("concat_representations"), "paper", tmp_path, [])
    assert step_command(probe, 0, probe.card.steps[1])[-4:] == [
        "--data", "data=cifar100", "--out", str((tmp_path / "concat_representations" / "paper" / "seed_0"
                                                 / "probe").absolute())]


class FakeCommands:
    """Stands in for the child processes: records each command and fails the ones asked to."""

    def __init__(self, monkeypatch, fail=()):
        self.ran, self.fail = [], set(fail)
        monkeypatch.setattr(procedure, "run_child_sweep", self)

    def __call__(self, command, interrupted):
        args = command[3:]  # after python -m regbench
        self.ran.append((args[0], next(arg for arg in args if "seed=" in arg or arg.endswith("members"))))
        return 1 if args[0] in self.fail else 0


def test_steps_run_seed_by_seed_in_order_and_a_relaunch_skips_the_finished_ones(tmp_path, monkeypatch, capsys):
    plan = make_plan(load_card(str(TINY_PROCEDURE_CARD)), "quick", tmp_path, ["seed=0,1"])
    prepare(plan)
    record_plan(plan)
    members = [str((plan.sweep_dir / f"seed_{seed}" / "members").absolute()) for seed in (0, 1)]
    failing = FakeCommands(monkeypatch, fail=("probe",))
    with pytest.raises(ReportedError, match="step probe of seed 0 ended with exit code 1 .*; relaunch the same"):
        run_steps(plan)
    assert failing.ran == [("train", "seed=100,101"), ("probe", members[0])]  # seed 1 never started

    fake = FakeCommands(monkeypatch)
    run_steps(plan)  # the members of seed 0 are done: skipped
    assert fake.ran == [("probe", members[0]), ("train", "seed=110,111"), ("probe", members[1])]
    assert "seed 0, step members: done, skipped" in capsys.readouterr().out
    done = json.loads((plan.sweep_dir / "seed_1" / "probe.json").read_text())
    assert done["command"][:2] == ["probe", members[1]]

    again = FakeCommands(monkeypatch)
    run_steps(plan)
    assert again.ran == []
    assert capsys.readouterr().out.count("done, skipped") == 4


def test_a_relaunch_whose_steps_would_run_something_else_is_refused(tmp_path):
    card = load_card(str(TINY_PROCEDURE_CARD))
    plan = make_plan(card, "quick", tmp_path, ["seed=0,1"])
    prepare(plan)
    record_plan(plan)
    prepare(make_plan(card, "quick", tmp_path, ["seed=0,1,2"]))  # more seeds: fine
    with pytest.raises(UserError, match="holds a reproduction whose steps ran .*trainer.max_epochs=1.* not .*"
                                        "trainer.max_epochs=3"):
        prepare(make_plan(card, "quick", tmp_path, ["seed=0,1", "trainer.max_epochs=3"]))


def write_probe(plan, seed, accuracies):
    out = plan.sweep_dir / f"seed_{seed}" / "probe"
    out.mkdir(parents=True)
    (out / "probe.json").write_text(json.dumps({"results": [{"k": k + 1, "test_acc": acc}
                                                            for k, acc in enumerate(accuracies)]}))


def test_each_arm_reads_its_value_per_seed_from_its_step_output(tmp_path):
    plan = make_plan(load_card(str(TINY_PROCEDURE_CARD)), "quick", tmp_path, ["seed=0,1"])
    write_probe(plan, 0, [0.90, 0.93])
    write_probe(plan, 1, [0.88, 0.94])
    assert read_step_values(plan) == {"baseline": {0: 0.90, 1: 0.88}, "treatment": {0: 0.93, 1: 0.94}}


def test_a_missing_output_key_or_a_non_number_is_reported(tmp_path):
    plan = make_plan(load_card(str(TINY_PROCEDURE_CARD)), "quick", tmp_path, ["seed=0,1"])
    with pytest.raises(ReportedError, match=r"baseline seed 0: .*seed_0/probe/probe.json cannot be read"):
        read_step_values(plan)
    write_probe(plan, 0, [0.9])
    with pytest.raises(ReportedError, match=r"treatment.key='results.1.test_acc' is not in .*seed_0/probe"):
        read_step_values(plan)
    (plan.sweep_dir / "seed_0" / "probe" / "probe.json").write_text(
        json.dumps({"results": [{"test_acc": 0.9}, {"test_acc": float("nan")}]}))
    with pytest.raises(ReportedError, match="results.1.test_acc is nan, not a finite number"):
        read_step_values(plan)


def test_dig_follows_dotted_keys_and_list_indices():
    document = {"soup": {"best_ingredient": {"test_acc": 0.9}}, "results": [{"a": 1}, {"a": 2}]}
    assert dig(document, "soup.best_ingredient.test_acc") == 0.9
    assert dig(document, "results.1.a") == 2 and dig(document, "results.-1.a") == 2
    for missing in ("soup.worst", "results.2.a", "results.x"):
        with pytest.raises(KeyError):
            dig(document, missing)
