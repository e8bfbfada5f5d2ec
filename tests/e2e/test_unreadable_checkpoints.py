"""An empty or truncated checkpoint never fails a relaunch: one line says so and what is done (resume from the
previous epoch's checkpoint, start over, or leave out best_test_*), and every attempt stays in metrics.json."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# `python driver.py train ARGS`: the regbench CLI with a fault at the start of epoch $FAULT_EPOCH, or once training
# is done ($FAULT_EPOCH=end): an exception ($FAULT=raise) or a SIGKILL ($FAULT=kill).
DRIVER = '''
import os, signal, sys
import lightning as L
import regbench.run.train

class Fault(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if os.environ.get("FAULT_EPOCH") == str(trainer.current_epoch):
            self.strike()

    def on_train_end(self, trainer, pl_module):
        if os.environ.get("FAULT_EPOCH") == "end":
            self.strike()

    def strike(self):
        if os.environ["FAULT"] == "raise":
            raise RuntimeError("injected fault")
        os.kill(os.getpid(), signal.SIGKILL)

build_trainer = regbench.run.train.build_trainer
regbench.run.train.build_trainer = lambda cfg, run_dir, logger, callbacks, plugins=(): build_trainer(
    cfg, run_dir, logger, [*callbacks, Fault()], plugins)

from regbench.cli import main
sys.argv = ["regbench", *sys.argv[1:]]
main()
'''
EPOCHS = 3
ARGS = ["train", "logger=none", f"trainer.max_epochs={EPOCHS}", "backbone.widths=[8]"]
TIMING = ("images_per_s", "train_time_s", "epoch_time_s")


@pytest.fixture
def run(tmp_path: Path, cli_env: dict[str, str], run_command):
    """Run the driver in `run_dir` with a fault (or none); return the CompletedProcess."""
    (tmp_path / "driver.py").write_text(DRIVER)

    def launch(run_dir: str, fault: str = "", epoch: str = "") -> subprocess.CompletedProcess:
        return run_command([*ARGS, f"hydra.run.dir={run_dir}"], tmp_path,
                           env={**cli_env, "FAULT": fault, "FAULT_EPOCH": epoch}, script="driver.py")
    return launch


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def history(run_dir: Path) -> list[dict[str, str]]:
    rows = csv.DictReader((run_dir / "history.csv").open())
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def trained_epochs(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("epoch ")]


def test_an_empty_last_checkpoint_resumes_from_the_previous_one_after_a_failed_and_a_killed_attempt(run, tmp_path):
    assert run("run", fault="raise", epoch="1").returncode == 1
    assert metrics(tmp_path / "run")["status"] == "failed"
    killed = run("run", fault="kill", epoch="2")
    assert killed.returncode == -signal.SIGKILL
    # Written when the attempt started: the kill leaves it, with the failed attempt before it.
    payload = metrics(tmp_path / "run")
    assert payload["status"] == "running" and [a["status"] for a in payload["attempts"]] == ["failed"]

    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(b"")
    relaunch = run("run")
    assert relaunch.returncode == 0, relaunch.stderr
    notice = f"regbench train: {last} is unreadable (an empty file); resuming from previous.ckpt"
    assert relaunch.stderr.strip() == notice
    assert trained_epochs(relaunch) == ["2/3", "3/3"]  # previous.ckpt ended epoch 1 of 3
    resumed = metrics(tmp_path / "run")
    assert resumed["status"] == "completed" and [a["status"] for a in resumed["attempts"]] == ["failed", "killed"]

    reference = run("reference")
    assert reference.returncode == 0, reference.stderr
    assert resumed["metrics"] == metrics(tmp_path / "reference")["metrics"]
    assert history(tmp_path / "run") == history(tmp_path / "reference")
    again = run("run")
    assert again.returncode == 0 and "already completed with this config; skipped" in again.stdout


def test_with_no_readable_checkpoint_the_run_starts_over_and_keeps_the_killed_attempt(run, tmp_path):
    assert run("run", fault="kill", epoch="2").returncode == -signal.SIGKILL
    checkpoints = tmp_path / "run" / "checkpoints"
    for name in ("last.ckpt", "previous.ckpt"):
        whole = (checkpoints / name).read_bytes()
        (checkpoints / name).write_bytes(whole[: len(whole) // 2])
    relaunch = run("run")
    assert relaunch.returncode == 0, relaunch.stderr
    [line] = relaunch.stderr.strip().splitlines()
    assert line.startswith(f"regbench train: {checkpoints / 'last.ckpt'} is unreadable (")
    assert line.endswith("no readable checkpoint is left, so the run starts over (earlier attempts stay in "
                         "metrics.json)")
    assert trained_epochs(relaunch) == ["1/3", "2/3", "3/3"]
    payload = metrics(tmp_path / "run")
    assert payload["status"] == "completed" and [a["status"] for a in payload["attempts"]] == ["killed"]
    assert [row["epoch"] for row in history(tmp_path / "run")] == ["0", "1", "2"]


def test_a_truncated_best_checkpoint_leaves_out_best_test_metrics_with_one_line(run, tmp_path):
    assert run("run", fault="kill", epoch="end").returncode == -signal.SIGKILL  # trained, not yet tested
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:100])
    relaunch = run("run")
    assert relaunch.returncode == 0, relaunch.stderr
    assert relaunch.stderr.strip() == (f"regbench train: {best} is unreadable (BadZipFile: File is not a zip file); "
                                       f"metrics.json leaves out best_test_*")
    assert trained_epochs(relaunch) == []
    payload = metrics(tmp_path / "run")
    assert payload["status"] == "completed" and [a["status"] for a in payload["attempts"]] == ["killed"]
    assert "test_acc" in payload["metrics"] and "best_val_acc" in payload["metrics"]
    assert not [key for key in payload["metrics"] if key.startswith("best_test_")]
    assert [row["epoch"] for row in history(tmp_path / "run")] == ["0", "1", "2"]
