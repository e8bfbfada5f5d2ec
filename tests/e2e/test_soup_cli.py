"""`regbench soup` through the real CLI on a tiny budget: a source run, ingredients fine-tuned from it by the
soup_ingredients sweep preset, a greedy and a uniform soup written as run directories that `regbench compare`
shows beside the ingredients; a run that was not fine-tuned from the shared source, a second soup into a completed
one and too few ingredients are one line, exit 2, nothing written."""
from __future__ import annotations

import pytest

from run_dirs import completed_metrics

pytestmark = pytest.mark.slow
TINY = ("trainer.max_epochs=1", "backbone.widths=[8,16]", "logger=csv")


@pytest.fixture
def sweep(run_regbench, tmp_path):
    """Two ingredients: crop padding 0 and 1 at one learning rate and seed, fine-tuned from the source's last
    weights."""
    source = run_regbench("train", *TINY, "hydra.run.dir=source")
    assert source.returncode == 0, source.stderr
    result = run_regbench("train", "-m", "+sweep=soup_ingredients", *TINY, "init.from=source/last",
                          "optim.lr=0.01", "seed=0",
                          "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    return tmp_path / "sweep"


def test_a_greedy_soup_is_written_beside_its_ingredients_and_compared_with_them(run_regbench, sweep, tmp_path):
    result = run_regbench("soup", "sweep", "--recipe", "greedy")
    assert result.returncode == 0, result.stderr
    metrics = completed_metrics(sweep / "soup_greedy")
    soup = metrics["soup"]
    ingredients = sorted(str(sweep / job) for job in ("0", "1"))
    assert soup["recipe"] == "greedy" and soup["norms_recomputed"] == 2
    assert [i["run_dir"] for i in soup["ingredients"]] == ingredients
    best = max(soup["ingredients"], key=lambda i: i["val_acc"])
    assert soup["best_ingredient"] == {"run_dir": best["run_dir"], "val_acc": best["val_acc"],
                                       "test_acc": best["recorded_test_acc"]}
    assert soup["chosen"][0] == best["run_dir"] and len(soup["greedy_steps"]) == 1
    assert (len(soup["chosen"]) == 2) == soup["greedy_steps"][0]["kept"]
    # Recipe 1: the second ingredient stays only if the soup's validation accuracy does not drop.
    assert metrics["metrics"]["val_acc"] >= best["val_acc"]
    assert {f"{split}_{m}" for split in ("val", "test") for m in ("acc", "nll", "ece")} <= set(metrics["metrics"])
    assert metrics["init"]["sources"][0]["path"] == str(tmp_path / "source" / "checkpoints" / "last.ckpt")
    assert "greedy soup of" in result.stdout

    uniform = run_regbench("soup", "sweep", "--recipe", "uniform", "--checkpoint", "best", "--by", "optim.lr",
                           "--out", "uniform")
    assert uniform.returncode == 0, uniform.stderr
    grouped = completed_metrics(tmp_path / "uniform" / "optim.lr=0.01")["soup"]
    assert grouped["chosen"] == ingredients and grouped["group"] == "optim.lr=0.01"
    assert grouped["ingredients"][0]["checkpoint"].endswith("best.ckpt")
    compared = run_regbench("compare", "sweep", "uniform", "--by", "soup.recipe,data.augment.crop_padding",
                            "--format", "csv")
    assert compared.returncode == 0, compared.stderr
    assert "4 completed runs" in compared.stderr
    header, *rows = compared.stdout.splitlines()
    assert header.split(",")[1:3] == ["soup.recipe", "data.augment.crop_padding"]
    assert sorted(row.split(",")[1:3] for row in rows) == [["", "0"], ["", "1"], ["greedy", ""], ["uniform", ""]]


def test_bad_ingredients_are_one_line_and_exit_2_with_nothing_written(run_regbench, sweep, tmp_path):
    cases = [
        (("sweep", "source", "--recipe", "greedy"),
         f"run {str(tmp_path / 'source')!r} was not fine-tuned from one checkpoint"),
        (("sweep/0", "--recipe", "uniform"), "a soup needs at least 2 completed fine-tuned runs, found 1"),
        (("sweep", "--recipe", "stew"), "argument --recipe: invalid choice: 'stew'"),
        (("sweep", "--recipe", "greedy", "--by", "data.augment.crop_padding"),
         "data.augment.crop_padding=0: a soup needs at least 2 completed fine-tuned runs, found 1"),
    ]
    for args, message in cases:
        result = run_regbench("soup", *args)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith(f"regbench soup: error: {message}")
    assert not list(sweep.glob("soup_*"))
    assert not (sweep / "0" / "soup_uniform").exists()
    first = run_regbench("soup", "sweep", "--recipe", "uniform")
    assert first.returncode == 0, first.stderr
    again = run_regbench("soup", "sweep", "--recipe", "uniform")
    assert again.returncode == 2 and "already holds a completed soup" in again.stderr
