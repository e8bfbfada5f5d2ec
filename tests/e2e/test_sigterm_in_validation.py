"""SIGTERM (a SLURM requeue or preemption) that lands while an epoch is being validated: the relaunched run
repeats that epoch and ends as an uninterrupted run does."""
from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.slow

# `python driver.py train ARGS`: the regbench CLI, with a callback that sends this process SIGTERM at the first
# validation batch of epoch $KILL_EPOCH (a SIGTERM from outside cannot be timed that well).
DRIVER = '''
import os, signal, sys
import lightning as L
import regbench.run.train

class SigtermInValidation(L.Callback):
    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.current_epoch == int(os.environ["KILL_EPOCH"]) and batch_idx == 0 and trainer.state.fn == "fit":
            os.kill(os.getpid(), signal.SIGTERM)

build_trainer = regbench.run.train.build_trainer
regbench.run.train.build_trainer = lambda cfg, run_dir, logger, callbacks, plugins=(): build_trainer(
    cfg, run_dir, logger, [*callbacks, SigtermInValidation()], plugins)

from regbench.cli import main
sys.argv = ["regbench", *sys.argv[1:]]
main()
'''
ARGS = ["train", "logger=none", "trainer.max_epochs=3", "backbone.widths=[8,16]"]
# Cooldown switches the sampler's temperature at epoch 1, the epoch the interrupted run repeats.
COOLDOWN = ["data.imbalance.type=exponential", "data.imbalance.factor=10", "data.balance.type=upsample",
            "data.balance.tau_end=1", "data.balance.switch_epoch=1"]

# RS2 rounds of 512 of the 1295 training images: epoch 1 is repeated, epoch 2 tops its round up from the pass's start.
RS2 = ["data.sampler=rs2", "data.rs2.fraction=0.4"]


@pytest.mark.parametrize("overrides", [[], COOLDOWN, RS2], ids=["plain", "cooldown", "rs2"])
def test_a_run_interrupted_during_validation_resumes_to_the_uninterrupted_result(tmp_path, cli_env, run_command,
                                                                                  overrides):
    (tmp_path / "driver.py").write_text(DRIVER)

    def run(run_dir: str, kill_epoch: int) -> dict:
        result = run_command([*ARGS, *overrides, f"hydra.run.dir={run_dir}"], tmp_path,
                             env={**cli_env, "KILL_EPOCH": str(kill_epoch)}, script="driver.py")
        assert result.returncode in (0, 143), result.stderr
        return json.loads((tmp_path / run_dir / "metrics.json").read_text())

    assert run("run", kill_epoch=1)["status"] == "interrupted"
    resumed = run("run", kill_epoch=-1)
    reference = run("reference", kill_epoch=-1)
    assert resumed["status"] == "completed" and [a["status"] for a in resumed["attempts"]] == ["interrupted"]
    assert resumed["metrics"] == reference["metrics"] and resumed.get("rs2") == reference.get("rs2")
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"] and all(row["val_acc"] for row in rows)
