"""DDP reports a training epoch over every rank's samples: the same loss and accuracy as one process."""
from __future__ import annotations

import csv

import pytest

pytestmark = pytest.mark.slow


def test_two_rank_epoch_stats_equal_one_process_when_the_weights_do_not_move(run_regbench, tmp_path):
    # With a vanishing learning rate, no norm and no augmentation every sample's loss is fixed, so an epoch's
    # mean loss and accuracy cannot depend on how the samples were split over ranks.
    frozen = ["logger=none", "trainer.max_epochs=1", "backbone.widths=[8,16]", "norm=none",
              "data.augment.crop_padding=0", "optim.lr=1e-12", "optim.weight_decay=0"]
    rows = {}
    for name, extra in (("one", []), ("ddp", ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"])):
        result = run_regbench("train", *frozen, *extra, f"hydra.run.dir={name}")
        assert result.returncode == 0, result.stderr
        rows[name] = next(csv.DictReader((tmp_path / name / "history.csv").open()))
    assert rows["ddp"]["train_images"] == rows["one"]["train_images"]
    assert float(rows["ddp"]["train_acc"]) == float(rows["one"]["train_acc"])
    assert float(rows["ddp"]["train_loss"]) == pytest.approx(float(rows["one"]["train_loss"]), rel=1e-5)
