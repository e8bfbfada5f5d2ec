"""The real `regbench` command in a subprocess, on tiny budgets."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from regbench.data.files import MNIST_FILES
from regbench.run.cli import main as train_main

pytestmark = pytest.mark.slow
TINY = ["trainer.max_epochs=2", "backbone.widths=[8,16]"]


def only_run_dir(root: Path) -> Path:
    runs = [p.parent for p in root.rglob("metrics.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_default_run_writes_a_complete_run_directory_with_wandb_offline(run_regbench, tmp_path):
    result = run_regbench("train", *TINY)
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(tmp_path / "outputs" / "default")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["error"] is None
    assert metrics["components"] == {"data": "digits", "backbone": "convnet", "norm": "batchnorm",
                                     "regularizer": "none", "optim": "sgd", "sched": "cosine"}
    for key in ("test_acc", "test_nll", "test_ece", "val_acc", "best_val_acc", "best_test_acc", "best_epoch"):
        assert key in metrics["metrics"]
    assert metrics["metrics"]["test_acc"] > 0.3 and metrics["epochs"] == 2 and metrics["images_per_s"] > 0
    assert metrics["versions"]["torch"] and len(metrics["config_hash"]) == 40
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"train_loss", "val_acc", "val_nll", "val_ece", "lr", "images_per_s"} <= set(rows[0])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert "seed: 0" in (run_dir / "config.yaml").read_text()
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert "epoch 2/2" in result.stdout  # plain progress lines when not on a terminal


def test_cutmix_preset_and_seeded_determinism(run_regbench, tmp_path):
    payloads = []
    for name in ("a", "b"):
        result = run_regbench("train", "+exp=cutmix", "logger=none", *TINY, f"hydra.run.dir=runs/{name}")
        assert result.returncode == 0, result.stderr
        payloads.append(json.loads((tmp_path / "runs" / name / "metrics.json").read_text()))
    assert payloads[0]["components"]["regularizer"] == "cutmix" and payloads[0]["exp_name"] == "cutmix"
    assert payloads[0]["metrics"] == payloads[1]["metrics"]
    assert payloads[0]["config_hash"] != "" and payloads[0]["calibration"] == payloads[1]["calibration"]


def test_two_job_multirun_writes_one_run_per_job(run_regbench, tmp_path):
    result = run_regbench("train", "-m", "logger=csv", "trainer.max_epochs=1", "backbone.widths=[8]",
                          "regularizer=[none],[mixup,label_smoothing]", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr
    names = sorted(json.loads(p.read_text())["components"]["regularizer"]
                   for p in (tmp_path / "sweep").glob("*/metrics.json"))
    assert names == ["mixup+label_smoothing", "none"]
    compared = run_regbench("compare", "sweep", "--format", "json")
    assert compared.returncode == 0, compared.stderr
    assert len(json.loads(compared.stdout)["groups"]) == 2


@pytest.mark.parametrize("args,message", [
    (["norm=nope"], "norm='nope' is not a known norm; allowed: batchnorm"),
    (["regularizer=[cutmix,bogus]"], "regularizer='bogus' is not a known regularizer"),
    (["data.batch_size=0"], "data.batch_size=0 is invalid: must be an integer > 0"),
    (["data.batch_size=abc"], "data.batch_size='abc' is invalid"),
    (["regularizer=[cutmix]", "regularizer.cutmix.prob=1.5"], "regularizer.cutmix.prob=1.5 is invalid"),
    (["regularizer=[mixup]", "regularizer.mixup.alpha=0"],
     "regularizer.mixup.alpha=0 is invalid: must be a number > 0"),
    (["regularizer=[mixup,cutmix]"], "mixup and cutmix both do input mixing"),
    (["optim.lr=-0.1"], "optim.lr=-0.1 is invalid"),
    (["trainer.max_epoch=3"], "trainer.max_epoch=3 is not a key regbench reads (keys of trainer: accelerator"),
    (["seed=abc"], "seed='abc' is invalid"),
    (["+exp=nope"], "+exp='nope' is not a known exp"),
])
def test_bad_inputs_end_in_one_line_and_exit_2_before_any_run_directory(tmp_path, monkeypatch, capsys, args,
                                                                        message):
    # In process: these are found before Hydra starts (the real command is checked once below).
    monkeypatch.chdir(tmp_path)
    assert train_main(["logger=none", *args]) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip().count("\n") == 0 and message in stderr, stderr
    assert not (tmp_path / "outputs").exists()


def test_the_real_command_reports_a_bad_input_in_one_line_with_exit_2(run_regbench, tmp_path):
    result = run_regbench("train", "logger=none", "data.batch_size=0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("regbench train: error: data.batch_size=0 is invalid: must be an integer > 0")
    assert not (tmp_path / "outputs").exists()


def test_the_real_command_checks_the_config_it_only_prints(run_regbench, tmp_path):
    # Hydra printed 23 lines and exited 1 for a mistake under --cfg job; a correct one still prints the config.
    result = run_regbench("train", "--cfg", "job", "+trainer.max_epoch=5")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "regbench train: error: trainer.max_epoch=5 is not a key regbench reads (keys of trainer: accelerator, "
        "channels_last, checkpoint_every_n_epochs, compile, deterministic, devices, max_epochs, precision, "
        "strategy); did you mean max_epochs?")
    printed = run_regbench("train", "--cfg", "job", "trainer.max_epochs=5")
    assert printed.returncode == 0 and "max_epochs: 5" in printed.stdout and not (tmp_path / "outputs").exists()


def read_only_bind(directory: Path) -> list[str]:
    """A command prefix that runs the rest with `directory` bind-mounted read-only (root ignores chmod), in a
    mount namespace of its own; skips the test where this machine does not allow one."""
    prefix = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(directory)]
    try:
        probe = subprocess.run([*prefix, "touch", str(directory / "probe")], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no unshare on this machine")
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot bind-mount read-only here: {probe.stderr.strip()}")
    return prefix


def test_an_unwritable_output_directory_is_one_line_before_anything_runs(cli_env, tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    result = subprocess.run([*read_only_bind(read_only), sys.executable, "-m", "regbench", "train", "logger=none",
                             f"hydra.run.dir={read_only}/run"], cwd=tmp_path, env=cli_env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"regbench train: error: hydra.run.dir='{read_only}/run' is invalid: '{read_only}' is not writable here; "
        f"choose a directory you can write")
    assert list(read_only.iterdir()) == [] and not (tmp_path / "outputs").exists()


def test_missing_data_files_are_refused_before_the_run_directory_exists(run_regbench, tmp_path):
    result = run_regbench("train", "logger=none", "data=mnist", f"data.root={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert "MNIST files not found" in result.stderr and result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "outputs").exists()


def test_errors_found_while_running_mark_the_run_failed(run_regbench, tmp_path):
    raw = tmp_path / "corrupt" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES.values():
        (raw / name).write_bytes(b"not an idx file")
    result = run_regbench("train", "logger=none", "data=mnist", f"data.root={tmp_path / 'corrupt'}")
    assert result.returncode == 2
    assert "is not a valid idx file" in result.stderr and result.stderr.strip().count("\n") == 0
    metrics = json.loads(only_run_dir(tmp_path / "outputs").joinpath("metrics.json").read_text())
    assert metrics["status"] == "failed" and "is not a valid idx file" in metrics["error"]


def test_an_existing_run_directory_is_never_overwritten(run_regbench, tmp_path):
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"status": "completed"}')
    result = run_regbench("train", "logger=none", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (run_dir / "metrics.json").read_text() == '{"status": "completed"}'
    assert not (run_dir / ".hydra").exists()
