"""A run whose validation accuracy peaks early keeps every epoch: in history.csv, in the loggers, in compare's
curves and in last.ckpt; and a kill after the peak resumes from the last epoch, not from the best one."""
from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import pytest
import torch

from regbench.compare.runs import load_run_dirs

pytestmark = pytest.mark.slow
EPOCHS = 6
# Heavy label noise and a wide MLP that memorizes it fast (Adam at a high rate, no weight decay, no augmentation,
# no decay of the rate): the clean validation accuracy peaks in the first epochs and then falls.
EARLY_PEAK = ["backbone=mlp", "optim=adamw", "optim.lr=3e-3", "optim.weight_decay=0", "sched=constant",
              "data.augment.crop_padding=0", "data.noise.type=symmetric", "data.noise.rate=0.6",
              f"trainer.max_epochs={EPOCHS}"]
TIMING = ("images_per_s", "train_time_s", "epoch_time_s")


def history(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "history.csv").open()))


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def saved_epoch(path: Path) -> int | None:
    """The epoch a checkpoint was saved in; None while last.ckpt is between its two renames."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    except FileNotFoundError:
        return None


def recorded_epochs(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["callbacks"]
    return len(next(value["rows"] for key, value in state.items() if key.startswith("RunRecorder")))


def test_an_early_peak_keeps_every_epoch_and_a_kill_after_it_resumes_from_the_last_epoch(run_regbench, tmp_path,
                                                                                         start_regbench):
    reference = run_regbench("train", *EARLY_PEAK, "logger=csv", "hydra.run.dir=reference")
    assert reference.returncode == 0, reference.stderr
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    best_epoch = expected["metrics"]["best_epoch"]
    # The precondition: a peak early enough to kill after it, and a clear fall after it to the last epoch.
    assert best_epoch <= EPOCHS - 3, expected["metrics"]
    assert expected["metrics"]["val_acc"] < expected["metrics"]["best_val_acc"] - 0.05, expected["metrics"]

    rows = history(tmp_path / "reference")
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    checkpoints = tmp_path / "reference" / "checkpoints"
    assert saved_epoch(checkpoints / "last.ckpt") == EPOCHS - 1 and recorded_epochs(checkpoints / "last.ckpt") == EPOCHS
    assert saved_epoch(checkpoints / "best.ckpt") == best_epoch
    # The loggers (W&B gets the same calls as Lightning's CSV logger) and compare's curves see every epoch too.
    logged = list(csv.DictReader((tmp_path / "reference" / "csv_logs" / "metrics.csv").open()))
    for column in ("val_acc", "train_acc", "train_acc_noisy"):
        assert sorted(int(row["epoch"]) for row in logged if row[column]) == list(range(EPOCHS)), column
    [record] = load_run_dirs([str(tmp_path / "reference")]).completed
    assert record.history["epoch"].tolist() == list(range(EPOCHS))

    killed = start_regbench("train", *EARLY_PEAK, "logger=none", "hydra.run.dir=killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not (last.exists() and (saved_epoch(last) or 0) > best_epoch):
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint after the best epoch"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    resumed_from = saved_epoch(last)
    assert best_epoch < resumed_from < EPOCHS - 1
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["status"] == "running"

    relaunch = run_regbench("train", *EARLY_PEAK, "logger=none", "hydra.run.dir=killed")
    assert relaunch.returncode == 0, relaunch.stderr
    trained = [line.split()[1] for line in relaunch.stdout.splitlines() if line.startswith("epoch ")]
    assert trained[0] == f"{resumed_from + 2}/{EPOCHS}", relaunch.stdout  # the epoch after the last saved one
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["status"] == "completed" and [a["status"] for a in resumed["attempts"]] == ["killed"]
    assert resumed["metrics"] == expected["metrics"] and resumed["calibration"] == expected["calibration"]
    assert without_timing(history(tmp_path / "killed")) == without_timing(rows)
