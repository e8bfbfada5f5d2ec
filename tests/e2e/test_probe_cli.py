"""`regbench probe` through the real CLI on a tiny budget: two digits runs (seeds 0 and 1, one epoch, a -m sweep)
probed on digits give probe.json with k = 1, 2 accuracies above chance, in seed order with their config hashes; a
finished probe is not overwritten; a target whose channels cannot be matched is one line, exit 2, nothing written."""
from __future__ import annotations

import json

import pytest

from run_dirs import completed_metrics

pytestmark = pytest.mark.slow


def test_probing_a_two_seed_sweep_beats_chance_for_one_and_two_concatenated_runs(run_regbench, tmp_path):
    trained = run_regbench("train", "-m", "seed=0,1", "trainer.max_epochs=1", "backbone.widths=[8,16]",
                           "logger=csv", "hydra.sweep.dir=sweep")
    assert trained.returncode == 0, trained.stderr
    result = run_regbench("probe", "sweep", "--data", "data=digits", "--out", "probe")
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert [run["seed"] for run in payload["runs"]] == [0, 1]
    for run in payload["runs"]:
        assert run["config_hash"] == completed_metrics(tmp_path / "sweep" / str(run["seed"]))["config_hash"]
    assert payload["chance_acc"] == pytest.approx(0.1) and payload["target_data"]["name"] == "digits"
    assert [(r["k"], r["num_features"]) for r in payload["results"]] == [(1, 16), (2, 32)]
    assert all(r["test_acc"] > 0.1 for r in payload["results"]), payload["results"]
    assert "test_acc" in result.stdout and "probe.json" in result.stdout

    again = run_regbench("probe", "sweep", "--out", "probe")
    assert again.returncode == 2 and "holds a finished probe" in again.stderr

    refused = run_regbench("probe", "sweep", "--data", "data=cifar10", "--out", "cifar")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "regbench probe: error: --data data=cifar10 has 3-channel images and the runs take 1-channel images; "
        "allowed: a target of 1-channel images"]
    assert not (tmp_path / "cifar").exists()
