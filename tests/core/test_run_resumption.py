"""Where an unfinished run resumes: last.ckpt, previous.ckpt when last.ckpt is unreadable, or a fresh start; how
the attempt that ended is recorded; when last.ckpt is written. No training: the checkpoints are small archives."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from regbench.rundir_format import config_hash
from regbench.run.plan import checkpoint_problem, inspect_run_dir
from regbench.run.trainer import AtomicCheckpointIO, LastCheckpoint, build_trainer

CONFIG = {"seed": 0, "exp_name": "default", "run_dir": "run"}


def save(path: Path, epoch: int) -> None:
    AtomicCheckpointIO().save_checkpoint({"epoch": epoch, "weights": torch.arange(1000.0)}, path)


def run_dir_with(tmp_path: Path, metrics: dict | None, checkpoints: dict[str, int]) -> Path:
    """A run directory whose checkpoints/NAME holds epoch `checkpoints[NAME]`, saved in that order."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(CONFIG))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    for name, epoch in checkpoints.items():
        save(run_dir / "checkpoints" / name, epoch)
    return run_dir


def epoch_of(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_saving_last_keeps_the_replaced_one_as_previous_and_best_is_replaced_in_place(tmp_path):
    for epoch in range(3):
        save(tmp_path / "last.ckpt", epoch)
        save(tmp_path / "best.ckpt", epoch)
    assert epoch_of(tmp_path / "last.ckpt") == 2 and epoch_of(tmp_path / "previous.ckpt") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt", "previous.ckpt"]


def test_an_empty_truncated_or_damaged_checkpoint_is_named_unreadable(tmp_path):
    path = tmp_path / "last.ckpt"
    save(path, 0)
    assert checkpoint_problem(path) is None
    whole = path.read_bytes()
    damaged = bytearray(whole)
    damaged[len(whole) // 2] ^= 0xFF  # inside the weights' bytes: torch.load would not notice
    for content, problem in ((b"", "an empty file"), (whole[: len(whole) // 2], "BadZipFile: File is not a zip file"),
                             (bytes(damaged), "data/0 is damaged")):  # torch names the archive's folder
        path.write_bytes(content)
        assert checkpoint_problem(path).endswith(problem)


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_a_run_resumes_from_its_last_checkpoint_and_records_how_the_attempt_ended(tmp_path, status):
    run_dir = run_dir_with(tmp_path, {"status": status, "error": "E", "wall_time_s": 1.0, "epochs": None,
                                      "attempts": [{"status": "killed"}]}, {"last.ckpt": 0, "best.ckpt": 0})
    resumption = inspect_run_dir(run_dir, config_hash(CONFIG))
    assert resumption.checkpoint == run_dir / "checkpoints" / "last.ckpt" and resumption.notice is None
    assert [a["status"] for a in resumption.attempts] == ["killed", status]


def test_an_attempt_killed_while_running_counts_after_the_attempts_before_it(tmp_path):
    # metrics.json says "running" from an attempt's start: a kill leaves it so, listing the attempts before it.
    run_dir = run_dir_with(tmp_path, {"status": "running", "attempts": [{"status": "failed"}]}, {"last.ckpt": 0})
    resumption = inspect_run_dir(run_dir, config_hash(CONFIG))
    assert resumption.completed is None
    assert [a["status"] for a in resumption.attempts] == ["failed", "killed"]
    assert resumption.attempts[-1]["error"] == "ended while running (killed, or the machine stopped)"


@pytest.mark.parametrize("corrupt", [lambda path: path.write_bytes(b""), truncate], ids=["empty", "truncated"])
def test_an_unreadable_last_checkpoint_falls_back_to_the_previous_one_in_one_line(tmp_path, corrupt):
    run_dir = run_dir_with(tmp_path, {"status": "running", "attempts": []}, {"last.ckpt": 0, "best.ckpt": 0})
    save(run_dir / "checkpoints" / "last.ckpt", 1)  # epoch 0 becomes previous.ckpt
    corrupt(run_dir / "checkpoints" / "last.ckpt")
    resumption = inspect_run_dir(run_dir, config_hash(CONFIG))
    assert resumption.checkpoint == run_dir / "checkpoints" / "previous.ckpt"
    assert epoch_of(resumption.checkpoint) == 0
    assert resumption.notice.startswith(f"{run_dir / 'checkpoints' / 'last.ckpt'} is unreadable (")
    assert resumption.notice.endswith("); resuming from previous.ckpt") and "\n" not in resumption.notice


def test_with_no_readable_checkpoint_the_run_starts_over_and_keeps_the_attempt(tmp_path):
    run_dir = run_dir_with(tmp_path, {"status": "running", "attempts": []}, {"last.ckpt": 0})
    save(run_dir / "checkpoints" / "last.ckpt", 1)
    truncate(run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "checkpoints" / "previous.ckpt").write_bytes(b"")
    resumption = inspect_run_dir(run_dir, config_hash(CONFIG))
    assert resumption.checkpoint is None and [a["status"] for a in resumption.attempts] == ["killed"]
    checkpoints = run_dir / "checkpoints"
    assert resumption.notice == (
        f"{checkpoints / 'last.ckpt'} is unreadable (BadZipFile: File is not a zip file); "
        f"{checkpoints / 'previous.ckpt'} is unreadable (an empty file); no readable checkpoint is left, so the run "
        "starts over (earlier attempts stay in metrics.json)")


def test_a_kill_between_the_two_renames_resumes_from_previous_without_a_notice(tmp_path):
    run_dir = run_dir_with(tmp_path, {"status": "running", "attempts": []}, {"last.ckpt": 0})
    save(run_dir / "checkpoints" / "last.ckpt", 1)
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    resumption = inspect_run_dir(run_dir, config_hash(CONFIG))
    assert resumption.checkpoint == run_dir / "checkpoints" / "previous.ckpt" and resumption.notice is None


def test_last_checkpoint_is_written_every_n_epochs_and_after_the_final_one(tmp_path):
    saved = []
    last = LastCheckpoint(tmp_path / "last.ckpt", every_n_epochs=2)
    for epoch in range(5):
        trainer = SimpleNamespace(current_epoch=epoch, max_epochs=5, save_checkpoint=lambda path: saved.append(epoch))
        last.on_train_epoch_end(trainer, None)
    assert saved == [1, 3, 4]


# The `trainer` group's settings that build_trainer reads.
TRAINER_CONFIG = {"max_epochs": 1, "accelerator": "cpu", "precision": "32-true", "strategy": "auto", "devices": 1,
                  "deterministic": True, "checkpoint_every_n_epochs": 1, "channels_last": False, "compile": False}


def test_each_epoch_saves_best_before_last_so_last_holds_the_updated_best_score(tmp_path):
    # Else a run resumed from the best epoch's last.ckpt would take a worse later epoch for a new best.
    order = [type(cb) for cb in build_trainer(TRAINER_CONFIG, tmp_path, None, []).callbacks
             if isinstance(cb, (ModelCheckpoint, LastCheckpoint))]
    assert order == [ModelCheckpoint, LastCheckpoint]
