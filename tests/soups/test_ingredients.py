"""Which runs a soup takes, checked without torch (regbench.soups.ingredients): completed runs fine-tuned from
one source with one architecture and data split, at least two per soup, grouped by a config key, soups never
taken as ingredients, and an output directory that never holds a run or a completed soup. Each refusal is one
line."""
from __future__ import annotations

import json

import pytest
import yaml

from regbench.errors import UserError
from regbench.soups.ingredients import check_out_dir, check_shared, find_ingredients, group_by

SOURCE = {"path": "/runs/source/checkpoints/last.ckpt", "source_config_hash": "abc"}


def make_run(root, name, status="completed", source=SOURCE, lr=0.01, backbone="convnet", classes=10,
             checkpoint="last.ckpt", regularizer=None):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / checkpoint).write_bytes(b"weights")
    config = {"seed": 0, "backbone": {"name": backbone}, "norm": {"name": "batchnorm"},
              "data": {"name": "digits", "val_fraction": 0.1, "split_seed": 0}, "optim": {"lr": lr},
              "regularizer": regularizer or {}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"status": status, "classes": [str(c) for c in range(classes)],
               "init": {"sources": [source]} if source else {}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_completed_fine_tuned_runs_below_a_sweep_are_the_ingredients_and_soups_are_not(tmp_path):
    for name in ("0", "1"):
        make_run(tmp_path, name)
    soup = make_run(tmp_path, "soup_greedy")
    (soup / "metrics.json").write_text(json.dumps({"status": "completed", "soup": {}}))
    ingredients = find_ingredients([str(tmp_path)], "last")
    assert [i.run_dir.name for i in ingredients] == ["0", "1"]
    assert ingredients[0].checkpoint == tmp_path / "0" / "checkpoints" / "last.ckpt"
    check_shared(ingredients)


@pytest.mark.parametrize("change, message", [
    ({"status": "failed"}, "is not completed (metrics.json status: failed); soups take completed runs only"),
    ({"source": None}, "was not fine-tuned from one checkpoint (no init.from in its metrics.json); soups average "
                       "runs fine-tuned from the same initialisation"),
    ({"checkpoint": "best.ckpt"}, "has no last checkpoint (checkpoints/last.ckpt is missing)"),
    ({"regularizer": {"ema": {"decay": 0.999}}}, "used regularizer ema, whose evaluated weights are an average kept "
                                                 "beside the network; soups take runs without ema or swa"),
])
def test_a_run_that_cannot_be_an_ingredient_is_refused_in_one_line(tmp_path, change, message):
    make_run(tmp_path, "0")
    make_run(tmp_path, "1", **change)
    with pytest.raises(UserError) as caught:
        find_ingredients([str(tmp_path)], "last")
    assert str(caught.value) == f"run {str(tmp_path / '1')!r} {message}"


@pytest.mark.parametrize("change, message", [
    ({"source": {**SOURCE, "source_config_hash": "other"}}, "do not share their initialisation"),
    ({"source": {**SOURCE, "path": "/runs/elsewhere/last.ckpt"}}, "do not share their initialisation"),
    ({"backbone": "mlp"}, "differ in backbone ({'name': 'convnet'} vs {'name': 'mlp'}); a soup averages one "
                          "architecture on one data split"),
    ({"classes": 4}, "differ in their number of classes (10 vs 4)"),
])
def test_runs_that_do_not_share_their_initialisation_or_architecture_are_refused(tmp_path, change, message):
    make_run(tmp_path, "0")
    make_run(tmp_path, "1", **change)
    with pytest.raises(UserError, match=None) as caught:
        check_shared(find_ingredients([str(tmp_path)], "last"))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_soup_needs_two_ingredients_per_group(tmp_path):
    for name, lr in (("0", 0.01), ("1", 0.01), ("2", 0.1)):
        make_run(tmp_path, name, lr=lr)
    groups = group_by(find_ingredients([str(tmp_path)], "last"), "optim.lr")
    assert {label: [i.run_dir.name for i in group] for label, group in groups.items()} == {
        "optim.lr=0.01": ["0", "1"], "optim.lr=0.1": ["2"]}
    with pytest.raises(UserError, match=r"^optim.lr=0.1: a soup needs at least 2 completed fine-tuned runs, "
                                        r"found 1$"):
        check_shared(groups["optim.lr=0.1"], "optim.lr=0.1")
    with pytest.raises(UserError, match=r"^--by 'optim.lrr' is invalid: run .* has no such config key"):
        group_by(groups["optim.lr=0.01"], "optim.lrr")


def test_a_soup_never_overwrites_a_run_or_a_completed_soup(tmp_path):
    check_out_dir(tmp_path / "new")
    run = make_run(tmp_path, "run")
    with pytest.raises(UserError, match=r"already holds a run \(config.yaml exists\); choose a new directory"):
        check_out_dir(run)
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "soup": {}}))
    with pytest.raises(UserError, match="already holds a completed soup; choose a new directory"):
        check_out_dir(run)
    (run / "metrics.json").write_text(json.dumps({"status": "running", "soup": {}}))
    check_out_dir(run)  # an unfinished soup attempt may be replaced


def test_a_path_that_is_not_a_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"^path 'nowhere' is not a directory: give sweep or run directories$"):
        find_ingredients(["nowhere"], "last")
