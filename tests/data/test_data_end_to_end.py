"""A noisy run and a long-tailed run of the real CLI finish and write their extra metrics."""
import csv
import json
import math

import pytest

TINY = ["data=digits", "trainer.max_epochs=1", "backbone.widths=[8,16]", "logger=none"]


@pytest.fixture
def run_cli(run_regbench, tmp_path):
    """`regbench train TINY OVERRIDES` in tmp_path; returns its metrics.json with its history."""
    def run(*overrides: str) -> dict:
        result = run_regbench("train", *TINY, *overrides, "hydra.run.dir=run")
        assert result.returncode == 0, result.stderr[-2000:]
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        with (tmp_path / "run" / "history.csv").open() as handle:
            metrics["history"] = list(csv.DictReader(handle))
        return metrics
    return run


@pytest.mark.slow
def test_noisy_digits_run(run_cli):
    out = run_cli("data.noise.type=symmetric", "data.noise.convention=uniform_other", "data.noise.rate=0.4")
    noise = out["noise"]
    assert out["status"] == "completed"
    assert noise["type"] == "symmetric" and noise["convention"] == "uniform_other" and noise["rate"] == 0.4
    assert abs(noise["realised_rate"] - 0.4) < 0.01  # exactly round(0.4 n_c) per class
    matrix = noise["transition_matrix"]
    assert len(matrix) == 10 and all(abs(sum(row) - 1) < 1e-4 and abs(row[i] - 0.6) < 0.02
                                     for i, row in enumerate(matrix))
    row = out["history"][0]
    assert 0 <= float(row["train_acc_clean"]) <= 1 and 0 <= float(row["train_acc_noisy"]) <= 1
    assert "per_class_acc" not in out


@pytest.mark.slow
def test_long_tail_digits_run(run_cli):
    out = run_cli("data.imbalance.type=exponential", "data.imbalance.factor=10",
                  "data.balance.type=upsample", "data.balance.tau=2")
    counts = out["imbalance"]["train_counts"]
    n_max = counts[0]
    assert counts == [math.floor(n_max * 10 ** (-c / 9)) for c in range(10)]
    assert len(out["per_class_acc"]) == 10
    assert out["balanced_acc"] == pytest.approx(sum(out["per_class_acc"]) / 10)
    assert "noise" not in out and "train_acc_noisy" not in out["history"][0]


@pytest.mark.slow
def test_smote_digits_run(run_cli):
    out = run_cli("data.imbalance.type=step", "data.imbalance.factor=10", "data.balance.type=smote",
                  "data.balance.smote_k=3")
    counts = out["imbalance"]["train_counts"]  # the long-tailed split SMOTE starts from
    assert out["smote"]["k"] == 3 and out["smote"]["added_per_class"] == [max(counts) - n for n in counts]
    assert out["smote"]["train_counts"] == [max(counts)] * 10
    assert int(out["history"][0]["train_images"]) == 10 * max(counts) // 64 * 64  # full batches of 64


@pytest.mark.slow
def test_cooldown_digits_run(run_cli):
    out = run_cli("trainer.max_epochs=2", "data.imbalance.type=exponential", "data.imbalance.factor=10",
                  "data.balance.type=upsample", "data.balance.tau=inf", "data.balance.tau_end=1",
                  "data.balance.switch_epoch=1")
    assert out["status"] == "completed" and len(out["history"]) == 2 and "smote" not in out


@pytest.mark.slow
def test_rs2_digits_run_takes_a_fresh_subset_each_epoch_and_schedules_over_the_steps_taken(run_cli):
    out = run_cli("data.sampler=rs2", "data.rs2.fraction=0.2", "trainer.max_epochs=3", "sched=cosine",
                  "optim.lr=0.05", "sched.warmup_epochs=0")
    # 0.2 of the 1295 training images, cut to whole batches of 64: 4 steps an epoch, 12 in all.
    assert out["rs2"] == {"fraction": 0.2, "variant": "without_replacement", "images_per_epoch": 256,
                          "train_images": 1295, "epochs": 3, "samples_seen": 768, "distinct_images_seen": 768}
    assert [int(row["train_images"]) for row in out["history"]] == [256] * 3
    # Cosine over the 12 steps taken: the learning rate after each epoch's 4 steps, down to 0 at the end.
    expected = [0.05 * (1 + math.cos(math.pi * step / 12)) / 2 for step in (4, 8, 12)]
    assert [float(row["lr"]) for row in out["history"]] == pytest.approx(expected, abs=1e-9)
