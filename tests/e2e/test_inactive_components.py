"""Through the real command: an inactive component is warned about (before the sweep and as the job starts) and
recorded in metrics.json; a harmful setting is one line, exit 2, before any run directory exists."""
from __future__ import annotations

import json

import pytest

from regbench.run.cli import main as train_main

TINY = ["trainer.max_epochs=1", "backbone.widths=[8,16]", "logger=none"]
SWA_REASON = ("regularizer.swa.start=0.75 averages only the run's single epoch: the average is the final weights "
              "(with BN statistics recomputed)")
GHOST_REASON = ("norm.virtual_batch_size=128 is more than half of data.batch_size=64: each batch is one virtual "
                "batch, normalized exactly as by batchnorm")


@pytest.mark.slow
def test_inactive_components_are_warned_about_and_recorded_in_metrics_json(run_regbench, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_regbench("train", "-m", "regularizer=[swa]", "norm=ghost_batchnorm", "norm.virtual_batch_size=128",
                          *TINY, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["inactive"] == [{"component": "regularizer=swa", "reason": SWA_REASON},
                                   {"component": "norm=ghost_batchnorm", "reason": GHOST_REASON}]
    warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
    job = "regularizer=[swa] norm=ghost_batchnorm norm.virtual_batch_size=128 " + " ".join(TINY)
    assert warnings == [  # once when the sweep is checked, once as the job starts
        f"regbench train: warning: sweep job {job}: regularizer=swa is inactive: {SWA_REASON}",
        f"regbench train: warning: sweep job {job}: norm=ghost_batchnorm is inactive: {GHOST_REASON}",
        f"regbench train: warning: regularizer=swa is inactive: {SWA_REASON}",
        f"regbench train: warning: norm=ghost_batchnorm is inactive: {GHOST_REASON}"]


@pytest.mark.parametrize("overrides,line", [
    (["regularizer=[cutout]", "regularizer.cutout.length=16"],
     "regbench train: error: regularizer.cutout.length=16 is invalid: a hole of 16 pixels is as wide as the 8x8 "
     "images and can blank them entirely; allowed on 8x8 images: 2..7 pixels, or a fraction of the side such as 0.5 "
     "(the paper's CIFAR-10 hole, 16 pixels on 32x32)"),
    (["regularizer=[ema]", "regularizer.ema.warmup=false"],
     "regbench train: error: regularizer.ema.decay=0.999 is invalid: it averages over about 1000 steps "
     "(1 / (1 - decay)), more than the run's 200 steps (10 epochs of 20): the evaluated weights would still be 82% "
     "those after the first step; use decay <= 0.995 or warmup=true"),
    (["data.batch_size=2000"],
     "regbench train: error: data.batch_size=2000 is invalid: must be at most the 1295 training images (after the "
     "validation split) so that an epoch has a full batch"),
])
def test_a_harmful_setting_is_one_line_before_any_run_directory(overrides, line, tmp_path, capsys):
    assert train_main([*overrides, f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    assert not (tmp_path / "run").exists()
