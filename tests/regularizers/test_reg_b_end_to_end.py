"""End to end on digits + convnet: every preset trains one epoch; stacks work or fail with one line."""
import json
from pathlib import Path

import pytest

PRESETS = ["elr", "coteaching", "ema", "swa", "sgdp", "adamp"]
FAST = ["data=digits", "backbone=convnet", "backbone.widths=[8,16]", "trainer.max_epochs=1", "logger=none"]


def completed_metrics(run_dir: Path) -> dict:
    payload = json.loads((run_dir / "metrics.json").read_text())
    assert payload["status"] == "completed", payload["error"]
    assert 0.0 <= payload["metrics"]["test_acc"] <= 1.0
    return payload


@pytest.mark.slow
def test_every_preset_trains_one_epoch(train, tmp_path):
    result = train("-m", f"+exp={','.join(PRESETS)}", *FAST, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    for job, preset in enumerate(PRESETS):
        payload = completed_metrics(tmp_path / str(job))
        assert payload["exp_name"] == preset
        assert (tmp_path / str(job) / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_cutmix_label_smoothing_ema_stack_trains(train, tmp_path):
    run_dir = tmp_path / "stack"
    result = train("regularizer=[cutmix,label_smoothing,ema]", *FAST, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert completed_metrics(run_dir)["components"]["regularizer"] == "cutmix+label_smoothing+ema"


def test_two_weight_averages_fail_with_one_line(tmp_path, capsys):
    # In process: the CLI refuses the stack in its preflight, before Hydra creates a run directory.
    from regbench.run.cli import main as train_main

    assert train_main(["regularizer=[ema,swa]", *FAST, f"hydra.run.dir={tmp_path / 'bad'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "regbench train: error: regularizer=[ema,swa]: ema and swa both do weight averaging; keep only one of them"]
    assert not (tmp_path / "bad").exists()
