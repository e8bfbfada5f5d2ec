"""data.prune: the training split pruned as the scores file and the settings say, and every bad value or a scores
file of another training split refused in one line before any run directory exists."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from data_configs import dataset_config

from regbench.data.module import build_datamodule
from regbench.errors import UserError
from regbench.scores_file import FORMAT, data_key, data_key_hash
from regbench.sweeps.preflight import preflight


def write_scores(path: Path, data: dict, positions: list[int], el2n: list[float]) -> str:
    path.write_text(json.dumps({
        "format": FORMAT, "data": data_key(data), "data_hash": data_key_hash(data), "seeds": [0, 1], "epochs": 1,
        "runs": {}, "positions": positions, "el2n": el2n, "grand": [-s for s in el2n]}))
    return str(path)


@pytest.fixture(scope="module")
def digits():
    data = dataset_config("digits")
    return data, build_datamodule(data, seed=0).splits["train"][2].tolist()


@pytest.fixture
def scores_file(tmp_path, digits):
    data, positions = digits
    el2n = torch.rand(len(positions), generator=torch.Generator().manual_seed(0)).tolist()
    return write_scores(tmp_path / "scores.json", data, positions, el2n), positions, el2n


def pruned(data: dict, **prune) -> dict:
    return {**data, "prune": {**data["prune"], **prune}}


@pytest.mark.parametrize("keep,score", [("hard", "el2n"), ("easy", "el2n"), ("hard", "grand")])
def test_the_training_split_keeps_the_chosen_scores(digits, scores_file, keep, score):
    data, _ = digits
    path, positions, el2n = scores_file
    module = build_datamodule(pruned(data, scores=path, fraction=0.3, keep=keep, score=score), seed=0)
    scores = dict(zip(positions, el2n if score == "el2n" else [-s for s in el2n]))
    count = len(positions) - int(0.3 * len(positions))
    ranked = sorted(positions, key=lambda p: scores[p], reverse=keep == "hard")
    kept = module.splits["train"][2].tolist()
    assert kept == sorted(ranked[:count])
    full = build_datamodule(data, seed=0)
    where = [positions.index(p) for p in kept]
    assert torch.equal(module.splits["train"][1], full.splits["train"][1][where])  # labels follow their images
    assert torch.equal(module.splits["train"][0], full.splits["train"][0][where])
    assert module.prune_report == {"scores": path, "score": score, "fraction": 0.3, "keep": keep, "kept": count,
                                   "of": len(positions), "score_seeds": [0, 1], "score_epochs": 1}
    assert module.split_size("val") == full.split_size("val")  # validation and test are never pruned


def test_random_keeps_a_seeded_subset_of_the_same_size(digits, scores_file):
    data, _ = digits
    path, positions, _ = scores_file
    draws = [build_datamodule(pruned(data, scores=path, fraction=0.3, keep="random", seed=seed), seed=0)
             .splits["train"][2].tolist() for seed in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2] and len(draws[0]) == len(positions) - int(0.3 * len(positions))


def test_a_scores_file_of_other_images_is_refused_when_the_data_loads(digits, tmp_path):
    data, positions = digits
    shifted = write_scores(tmp_path / "other.json", data, [p + 1 for p in positions], [0.0] * len(positions))
    with pytest.raises(UserError, match="scores other training images than this run's training split"):
        build_datamodule(pruned(data, scores=shifted), seed=0)


def test_a_matching_scores_file_passes_preflight(scores_file):
    preflight([f"data.prune.scores={scores_file[0]}", "data.prune.fraction=0.3"], multirun=False)


def test_bad_prune_settings_are_one_line_errors(tmp_path, digits, scores_file):
    data, positions = digits
    path = scores_file[0]
    fewer = write_scores(tmp_path / "fewer.json", data, positions[:10], [0.0] * 10)
    (tmp_path / "other.json").write_text(json.dumps({"el2n": []}))
    cases = [
        ([f"data.prune.scores={path}", "data.val_fraction=0.2"],
         f"data.prune.scores='{path}' is invalid: scores another training split (data.val_fraction=0.1 there, 0.2 "
         f"here)"),
        ([f"data.prune.scores={path}", "data.split_seed=3"], "data.prune.scores="),
        ([f"data.prune.scores={fewer}"],
         f"data.prune.scores='{fewer}' is invalid: scores 10 training images, but this data config's training "
         f"split has {len(positions)}"),
        ([f"data.prune.scores={tmp_path / 'missing.json'}"], "is invalid: no such file (write one with `regbench"),
        ([f"data.prune.scores={tmp_path / 'other.json'}"], "is invalid: is not a scores file written by `regbench"),
        ([f"data.prune.scores={path}", "data.balance.type=smote"], "is invalid: cannot be combined with data.balance"),
        (["data.prune.keep=medium"], "data.prune.keep='medium' is invalid: allowed: hard, easy, random"),
        (["data.prune.score=forgetting"], "data.prune.score='forgetting' is invalid: allowed: el2n, grand, "
                                          "grand_init"),
        ([f"data.prune.scores={path}", "data.prune.score=grand_init"],
         f"data.prune.score='grand_init' is invalid: is not in {path} (written before regbench scored it"),
        (["data.prune.fraction=1.0"], "data.prune.fraction=1.0 is invalid: must be a fraction in [0, 1)"),
        (["data.prune.fraction=-0.1"], "data.prune.fraction=-0.1 is invalid"),
    ]
    for overrides, expected in cases:
        with pytest.raises(UserError) as err:
            preflight(overrides, multirun=False)
        assert expected in str(err.value) and "\n" not in str(err.value), overrides
