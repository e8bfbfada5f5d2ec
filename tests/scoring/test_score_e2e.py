"""Data Diet through the real CLI on digits: `regbench score` with 2 seeds x 1 epoch writes scores.json (each
run's scores the mean's parts), a relaunch trains and scores nothing again, a pruned run trains on the kept subset
and records it in metrics.json, and mistakes are one line before any directory exists."""
from __future__ import annotations

import json

import pytest
from run_dirs import completed_metrics

pytestmark = pytest.mark.slow
TINY = ["backbone.widths=[8]", "logger=none"]


def test_score_then_train_on_the_hard_examples(run_regbench, tmp_path):
    done = run_regbench("score", "scores", "--epochs", "1", "seed=0,1", *TINY)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert scores["seeds"] == [0, 1] and scores["epochs"] == 1 and scores["data"]["name"] == "digits"
    runs = [json.loads((tmp_path / "scores" / "runs" / f"seed_{s}" / "sample_scores.json").read_text()) for s in (0, 1)]
    for name in ("el2n", "grand", "grand_init"):
        assert len(scores[name]) == len(scores["positions"]) == 1295
        means = [(a + b) / 2 for a, b in zip(runs[0][name], runs[1][name])]
        assert scores[name] == pytest.approx(means)
        assert runs[0][name] != runs[1][name]  # two initializations, two sets of scores
    assert all(0 <= s <= 2 ** 0.5 for s in scores["el2n"])  # ||p - y|| for a probability vector p
    assert runs[0]["grand_init"] != runs[0]["grand"]  # before and after training

    scored_at = [(tmp_path / "scores" / "runs" / f"seed_{s}" / "sample_scores.json").stat().st_mtime_ns for s in (0, 1)]
    again = run_regbench("score", "scores", "--epochs", "1", "seed=0,1", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 jobs, 2 completed (2 already done and skipped" in again.stdout
    assert scored_at == [(tmp_path / "scores" / "runs" / f"seed_{s}" / "sample_scores.json").stat().st_mtime_ns
                         for s in (0, 1)]
    assert json.loads((tmp_path / "scores" / "scores.json").read_text()) == scores

    done = run_regbench("train", "data.prune.scores=scores/scores.json", "data.prune.fraction=0.3",
                        "data.prune.keep=hard", "trainer.max_epochs=1", *TINY, "hydra.run.dir=pruned")
    assert done.returncode == 0, done.stderr[-2000:]
    payload = completed_metrics(tmp_path / "pruned")
    assert payload["prune"] == {"scores": "scores/scores.json", "score": "el2n", "fraction": 0.3, "keep": "hard",
                                "kept": 907, "of": 1295, "score_seeds": [0, 1], "score_epochs": 1}

    refused = run_regbench("train", "data.prune.scores=scores/scores.json", "data.val_fraction=0.2", *TINY,
                           "hydra.run.dir=refused")
    assert refused.returncode == 2 and not (tmp_path / "refused").exists()
    assert refused.stderr.strip().splitlines() == [
        "regbench train: error: data.prune.scores='scores/scores.json' is invalid: scores another training split "
        "(data.val_fraction=0.1 there, 0.2 here)"]


@pytest.mark.parametrize("args,expected", [
    (["s", "--epochs", "0"], "--epochs=0 is invalid"),
    (["s", "trainer.max_epochs=3"], "'trainer.max_epochs=3' cannot be overridden: regbench score sets it"),
    (["s", "data.prune.fraction=0.3"], "'data.prune.fraction=0.3' is invalid here"),
    (["s", "norm=batchnorm,groupnorm"], "sweeps a setting"),
    (["s", "seed=0,0"], "seed=0,0 is invalid"),
    (["s", "norm=no_such_norm"], "norm='no_such_norm' is not a known norm"),
    (["s", "seed=0,1", "data.noise.type=symmetric", "data.noise.rate=0.2"],
     "seed=1 trains on another training split than seed=0 (data.noise follow the seed)"),
])
def test_score_mistakes_are_one_line_before_any_directory(run_regbench, tmp_path, args, expected):
    done = run_regbench("score", *args, "logger=none")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench score: error: ") and expected in lines[0], lines
    assert list(tmp_path.iterdir()) == []
