"""DropBlock trains end to end through `regbench train` on digits; bad stacks exit 2 before any run directory."""
import json

import pytest

FAST = ["trainer.max_epochs=1", "logger=none"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["dropblock", "dropblock_progressive"])
def test_dropblock_presets_train_one_epoch_on_digits(run_regbench, tmp_path, preset):
    # Width 8: resnet18 at width 4 aborts inside torch's CPU kernels on some machines, with or without DropBlock.
    done = run_regbench("train", f"+exp={preset}", *FAST, "backbone.width=8", "hydra.run.dir=run", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert payload["status"] == "completed", payload["error"]
    assert payload["exp_name"] == preset
    assert payload["components"]["regularizer"] == "dropblock"
    assert payload["components"]["backbone"] == "resnet18"


@pytest.mark.slow
@pytest.mark.parametrize("overrides,message", [
    (["+exp=dropblock", "regularizer.dropblock.stages=[4,5]"],
     "regularizer.dropblock.stages=[4, 5]: backbone=resnet18 has no stage 5; allowed: 'all' or stage numbers 1..4"),
    (["regularizer=[dropblock]", "backbone=mlp"],
     "regularizer=dropblock needs a backbone with convolutional stages"),
])
def test_bad_stages_and_backbones_exit_2_in_one_line_before_the_run_directory(run_regbench, tmp_path, overrides,
                                                                              message):
    run_dir = tmp_path / "run"
    done = run_regbench("train", *overrides, *FAST, "hydra.run.dir=run")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert not run_dir.exists()
