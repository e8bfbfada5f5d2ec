"""logger=tensorboard and logger=mlflow: a tiny run writes event files / an MLflow run (in a local store in the run
directory) holding its epoch metrics, the values history.csv and metrics.json hold; a resumed run continues its
MLflow run; a logger whose package is missing is one line before anything runs."""
from __future__ import annotations

import csv
import importlib.util
import json
import struct
from pathlib import Path

import pytest

from regbench.errors import UserError
from regbench.loggers import LOGGERS, MLFLOW_DIR, TENSORBOARD_DIR, check_logger_installed

pytestmark = pytest.mark.slow
TINY = ("train", "trainer.max_epochs=2", "backbone.widths=[8]", "hydra.run.dir=run")
# TFRecord framing: the record's length (uint64), its masked CRC (uint32), the record, the record's masked CRC.
LENGTH, CRC = struct.Struct("<Q"), struct.Struct("<I")


def history(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "history.csv").open() as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files, by tag: (step, value), checksums verified as TensorBoard reads them."""
    from tensorboardX.record_writer import masked_crc32c
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data, position = path.read_bytes(), 0
        while position < len(data):
            header = data[position:position + LENGTH.size]
            (length,), (header_crc,) = LENGTH.unpack(header), CRC.unpack_from(data, position + LENGTH.size)
            start = position + LENGTH.size + CRC.size
            record = data[start:start + length]
            (record_crc,) = CRC.unpack_from(data, start + length)
            assert (header_crc, record_crc) == (masked_crc32c(header), masked_crc32c(record)), path
            position = start + length + CRC.size
            event = Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_event_files_hold_the_epoch_metrics(run_regbench, tmp_path):
    result = run_regbench(*TINY, "logger=tensorboard")
    assert result.returncode == 0, result.stderr
    scalars = tensorboard_scalars(tmp_path / "run" / TENSORBOARD_DIR)
    rows = history(tmp_path / "run")
    for column in ("val_acc", "val_nll", "train_acc", "train_loss"):
        assert [value for _, value in scalars[column]] == pytest.approx([row[column] for row in rows]), column
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert scalars["test_acc"][0][1] == pytest.approx(final["test_acc"])
    assert (tmp_path / "run" / TENSORBOARD_DIR / "hparams.yaml").is_file()


@pytest.fixture
def mlflow_client(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as regbench sets it for its local file store
    from mlflow.tracking import MlflowClient

    return MlflowClient


def test_an_mlflow_run_in_the_run_directory_holds_the_epoch_metrics(run_regbench, tmp_path, mlflow_client):
    result = run_regbench(*TINY, "logger=mlflow")
    assert result.returncode == 0, result.stderr
    assert "Experiment with name" not in result.stderr
    client = mlflow_client(f"file:{tmp_path / 'run' / MLFLOW_DIR}")
    experiment = client.get_experiment_by_name("regbench")
    run, = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "default/run"
    rows = history(tmp_path / "run")
    for column in ("val_acc", "train_acc", "train_loss", "lr"):
        logged = sorted(client.get_metric_history(run.info.run_id, column), key=lambda metric: metric.step)
        assert [metric.value for metric in logged] == pytest.approx([row[column] for row in rows]), column
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert run.data.metrics["test_acc"] == pytest.approx(final["test_acc"])
    assert run.data.params["seed"] == "0" and run.data.params["norm_name"] == "batchnorm"
    assert run.data.tags["regbench.group"] == "default" and "regbench.run_key" in run.data.tags


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, mlflow_client):
    def logger(run_key: str):
        return LOGGERS.create("mlflow", {"mlflow": {"experiment_name": "regbench", "tracking_uri": None}},
                              run_dir=tmp_path, group="g", run_name="r", job_type=None, run_id=run_key,
                              tags=["digits"], config={"seed": 0})

    first = logger("run-key-1")
    first.finalize("success")
    assert logger("run-key-1").run_id == first.run_id
    assert logger("run-key-2").run_id != first.run_id


@pytest.mark.parametrize("name, missing, install", [("mlflow", {"mlflow"}, "pip install 'regbench[mlflow]'"),
                                                    ("tensorboard", {"tensorboardX", "tensorboard"},
                                                     "pip install tensorboardX"),
                                                    ("wandb", {"wandb"}, "pip install wandb")])
def test_a_logger_without_its_package_is_refused_in_one_line(monkeypatch, name, missing, install):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module: None if module in missing else find_spec(module))
    with pytest.raises(UserError) as refused:
        check_logger_installed(name)
    message = str(refused.value)
    assert message.startswith(f"logger={name} needs ") and install in message and "\n" not in message
    check_logger_installed("csv")  # Lightning's own: nothing to install


@pytest.mark.parametrize("logger, override, message", [
    ("mlflow", "logger.mlflow.tracking_uri=''", "logger.mlflow.tracking_uri='' is invalid: null (a store in the run "
                                                "directory) or a tracking URI"),
    ("mlflow", "logger.mlflow.experiment_name=5", "logger.mlflow.experiment_name=5 is invalid: must be a non-empty "
                                                  "name"),
    ("wandb", "logger.wandb.mode=sometimes", "logger.wandb.mode='sometimes' is invalid: allowed: auto, online"),
])
def test_a_bad_logger_setting_is_one_line_and_nothing_is_written(logger, override, message, tmp_path, monkeypatch,
                                                                 capsys):
    from regbench.run.cli import main as train_main

    monkeypatch.chdir(tmp_path)
    assert train_main([f"logger={logger}", override]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith(f"regbench train: error: {message}"), stderr
    assert list(tmp_path.iterdir()) == []
