"""What one run shows in W&B, read back from its offline files with W&B's own reader: epoch-level metrics on the
epoch axis with best and last values in the summary, the test set's reliability table and per-class accuracy
(the numbers metrics.json holds), the memorization curves of a noisy run (history.csv's), and the first CutMix
batch as captioned images. The pieces (pixels, captions, bins) are checked by hand first."""
from __future__ import annotations

import csv
import json
import re
from types import SimpleNamespace

import pytest
import torch
import yaml

from regbench.compare.wandb_source import load_wandb_runs
from regbench.data.module import ImageDataModule
from regbench.loggers import wandb_config
from regbench.run.dashboard import (FIRST_BATCH, MEMORIZATION, PER_CLASS, PER_CLASS_BARS, PREVIEW_IMAGES,
                                    PREVIEW_MIN_SIDE, RELIABILITY, RELIABILITY_DIAGRAM, preview_pixels,
                                    reliability_rows, summary_ops, target_caption)

pytestmark = pytest.mark.slow
NOISY_CUTMIX_RUN = ["train", "trainer.max_epochs=2", "backbone.widths=[8]", "regularizer=[cutmix]",
                    "data.noise.type=symmetric", "data.noise.rate=0.2", "data.imbalance.type=exponential",
                    "data.imbalance.factor=2", "data.crafted_val.shifts=[gaussian_noise,contrast]",
                    "hydra.run.dir=run"]


def test_preview_pixels_undo_the_data_modules_normalization_and_enlarge_small_images():
    pixels = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    stats = SimpleNamespace(mean=torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1),
                            std=torch.tensor([0.3, 0.25, 0.1]).view(1, 3, 1, 1))
    shown = preview_pixels(ImageDataModule.normalize(stats, pixels), [0.2, 0.5, 0.7], [0.3, 0.25, 0.1])
    scale = PREVIEW_MIN_SIDE // 8
    assert shown.shape == (3, 8 * scale, 8 * scale, 3) and shown.dtype.name == "uint8"
    # Every enlarged block is the original pixel, channels last.
    assert (torch.from_numpy(shown[:, ::scale, ::scale]) == pixels.permute(0, 2, 3, 1)).all()


def test_a_caption_names_the_largest_target_weights():
    classes = [str(digit) for digit in range(10)]
    assert target_caption(torch.tensor([0, 0, 0, 0.25, 0, 0, 0, 0.75, 0, 0]), classes) == "7 0.75 + 3 0.25"
    assert target_caption(torch.nn.functional.one_hot(torch.tensor(4), 10), classes) == "4 1.00"


def test_reliability_rows_keep_every_bin_and_leave_empty_ones_blank():
    bins = {"bin_edges": [0.0, 0.5, 1.0, 1.0], "bin_count": [0.0, 4.0, 2.0], "bin_conf": [0.0, 0.7, 1.0],
            "bin_acc": [0.0, 0.75, 1.0]}
    assert reliability_rows(bins) == [[0.0, 0.5, 0, None, None], [0.5, 1.0, 4, 0.7, 0.75], [1.0, 1.0, 2, 1.0, 1.0]]


@pytest.mark.parametrize("metric, ops", [("val_acc", "max,last"), ("train_acc_clean", "max,last"),
                                         ("train_acc_noisy", None),
                                         ("val_nll", "min,last"), ("val_ece", "min,last"), ("train_loss", "min,last"),
                                         ("lr", None), ("images_per_s", None)])
def test_summaries_keep_the_best_value_in_the_metrics_direction(metric, ops):
    assert summary_ops(metric) == ops


@pytest.fixture(scope="module")
def dashboard_run(tmp_path_factory, offline_wandb_run, run_command):
    """A noisy, long-tailed CutMix run on digits with a crafted validation set and logger=wandb (offline), read back
    with W&B's reader."""
    root = tmp_path_factory.mktemp("dashboard")
    done = run_command([*NOISY_CUTMIX_RUN, "logger=wandb"], root)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = root / "run"
    with (run_dir / "history.csv").open() as handle:
        history = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    return SimpleNamespace(dir=run_dir, wandb=offline_wandb_run(run_dir / "wandb"), history=history,
                           metrics=json.loads((run_dir / "metrics.json").read_text()))


def test_epoch_metrics_are_charted_by_epoch_with_their_best_and_last_values(dashboard_run):
    definitions = dashboard_run.wandb.metric_definitions()
    assert "epoch" in definitions
    for name, best in (("val_acc", "max"), ("train_acc", "max"), ("val_nll", "min"), ("val_ece", "min"),
                       ("train_loss", "min")):
        assert definitions[name]["step_metric"] == "epoch", name
        assert definitions[name]["summary"] == {best: True, "last": True}, name
    assert definitions["lr"]["step_metric"] == "epoch" and "summary" not in definitions["lr"]
    epochs_logged = [row["epoch"] for row in dashboard_run.wandb.history() if "val_acc" in row]
    assert epochs_logged == [0, 1]
    summary, history, metrics = dashboard_run.wandb.summary, dashboard_run.history, dashboard_run.metrics["metrics"]
    assert summary["val_acc"]["max"] == pytest.approx(max(row["val_acc"] for row in history))
    assert summary["val_acc"]["max"] == pytest.approx(metrics["best_val_acc"])
    assert summary["val_acc"]["last"] == pytest.approx(metrics["val_acc"])
    assert summary["val_nll"]["min"] == pytest.approx(min(row["val_nll"] for row in history))
    assert summary["train_loss"]["last"] == pytest.approx(metrics["train_loss"])


def test_every_metric_logged_per_epoch_is_charted_by_epoch(dashboard_run):
    definitions = dashboard_run.wandb.metric_definitions()
    per_epoch = set(dashboard_run.history[0]) & set().union(*dashboard_run.wandb.history()) - {"epoch"}
    assert {"val_crafted_acc", "train_acc_noisy", "images_per_s"} <= per_epoch
    assert {name for name in per_epoch if definitions.get(name, {}).get("step_metric") != "epoch"} == set()
    assert definitions["val_crafted_acc"]["summary"] == {"max": True, "last": True}


def panels(offline) -> dict[str, dict]:
    """The run's custom charts: logged key -> panel config (W&B files them as `_wandb.visualize.KEY` config)."""
    prefix = "_wandb.visualize."
    return {key.removeprefix(prefix): value["panel_config"] for update in offline.of_type("config")
            for key, value in update.get("update", {}).items() if key.startswith(prefix)}


def test_the_reliability_diagram_and_per_class_bars_chart_the_runs_test_results(dashboard_run):
    charts = panels(dashboard_run.wandb)
    assert charts[RELIABILITY_DIAGRAM]["panelDefId"] == "wandb/lineseries/v0"
    assert charts[PER_CLASS_BARS]["panelDefId"] == "wandb/bar/v0"
    assert f'"value": "{RELIABILITY_DIAGRAM}_table"' in json.dumps(charts[RELIABILITY_DIAGRAM]["userQuery"])
    diagram = dashboard_run.wandb.table(f"{RELIABILITY_DIAGRAM}_table")
    lines: dict[str, list] = {}
    for x, line, y in diagram["data"]:
        lines.setdefault(line, []).extend((x, y))
    reliability = dashboard_run.wandb.table(RELIABILITY)["data"]
    filled = [value for row in reliability if row[2] > 0 for value in (row[3], row[4])]
    assert filled and lines["final model"] == pytest.approx(filled)
    assert lines["perfect calibration"] == [0.0, 0.0, 1.0, 1.0]
    bars = dashboard_run.wandb.table(f"{PER_CLASS_BARS}_table")
    assert bars["columns"] == ["class", "accuracy"]
    assert bars["data"] == dashboard_run.wandb.table(PER_CLASS)["data"]


def test_the_reliability_table_and_per_class_accuracy_are_the_runs_test_results(dashboard_run):
    metrics = dashboard_run.metrics
    reliability = dashboard_run.wandb.table(RELIABILITY)
    assert reliability["columns"] == ["bin_low", "bin_high", "count", "confidence", "accuracy"]
    calibration = metrics["calibration"]
    assert [row[2] for row in reliability["data"]] == calibration["bin_count"]
    filled = [(row, acc) for row, acc in zip(reliability["data"], calibration["bin_acc"]) if row[2] > 0]
    assert filled and all(row[4] == pytest.approx(acc) for row, acc in filled)
    per_class = dashboard_run.wandb.table(PER_CLASS)
    assert [row[0] for row in per_class["data"]] == [str(digit) for digit in range(10)]
    assert [row[1] for row in per_class["data"]] == pytest.approx(metrics["per_class_acc"])


def test_a_noisy_run_charts_its_memorization_curves(dashboard_run):
    table = dashboard_run.wandb.table(f"{MEMORIZATION}_table")
    curves: dict[str, list[float]] = {}
    for row in table["data"]:
        values = dict(zip(table["columns"], row))
        curves.setdefault(values["lineKey"], []).append(values["lineVal"])
    clean, noisy = curves["clean samples"], curves["noisy samples (fit to the wrong label)"]
    assert clean == pytest.approx([row["train_acc_clean"] for row in dashboard_run.history])
    assert noisy == pytest.approx([row["train_acc_noisy"] for row in dashboard_run.history])


def test_the_first_cutmix_batch_is_logged_once_as_captioned_images(dashboard_run):
    batches = [row for row in dashboard_run.wandb.history() if f"{FIRST_BATCH}._type" in row]
    assert len(batches) == 1 and batches[0]["epoch"] == 0
    media = dashboard_run.wandb.summary[FIRST_BATCH]
    assert media["count"] == PREVIEW_IMAGES and len(media["captions"]) == PREVIEW_IMAGES
    for caption in media["captions"]:
        weights = [float(weight) for weight in re.findall(r"\d (\d\.\d\d)", caption)]
        assert weights and sum(weights) == pytest.approx(1.0, abs=0.011), caption
    # CutMix mixed at least one pair in the batch (prob 1.0, lam from Beta(1, 1)).
    assert any("+" in caption for caption in media["captions"])
    from PIL import Image

    sizes = {Image.open(dashboard_run.wandb.files / name).size for name in media["filenames"]}
    assert sizes == {(PREVIEW_MIN_SIDE, PREVIEW_MIN_SIDE)}


def test_compare_reads_the_last_values_from_the_wandb_summary(dashboard_run):
    """`regbench compare --wandb` takes a run's final metrics from W&B's summary, where the epoch metrics hold
    their best and last values: it gets metrics.json's numbers."""
    offline = dashboard_run.wandb

    class Run:
        id, state = offline.run["run_id"], "finished"
        config = wandb_config(yaml.safe_load((dashboard_run.dir / "config.yaml").read_text()))
        summary = offline.summary

        def history(self, samples, pandas):
            return offline.history()

    class Api:
        def runs(self, path, filters):
            return [Run()]

    record, = load_wandb_runs("lab/regbench", None, api=Api()).completed
    for name in ("val_acc", "val_nll", "test_acc", "best_test_acc"):
        assert record.metrics[name] == pytest.approx(dashboard_run.metrics["metrics"][name]), name
    # The test metrics come after the last epoch (Lightning stamps them with the epoch count): a row of their own.
    expected = [row["val_acc"] for row in dashboard_run.history]
    assert list(record.history["val_acc"][:len(expected)]) == pytest.approx(expected)
