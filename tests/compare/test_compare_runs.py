import json

import numpy as np
import pytest
from compare_rundirs import acc_metrics, write_run

from regbench.compare.runs import load_run_dirs
from regbench.errors import UserError


def test_sweep_directory_loads_every_job(sweep):
    runs = load_run_dirs([str(sweep["dir"])])
    assert len(runs.completed) == 12
    assert not runs.malformed and not runs.not_completed
    record = next(r for r in runs.completed if r.components["regularizer"] == "cutmix" and r.seed == 1)
    assert record.metrics["test_acc"] == pytest.approx(0.935)
    assert record.config["regularizer"] == {"cutmix": {"alpha": 1.0, "prob": 1.0}}
    assert list(record.history["epoch"]) == [0, 1, 2]
    assert "note" not in record.history  # the non-numeric extra column is ignored
    assert record.calibration is not None and len(record.calibration.bin_edges) == 16


def test_run_directory_and_metrics_file_can_be_given_directly(tmp_path):
    run_dir = write_run(tmp_path / "run", seed=3, metrics=acc_metrics(0.9))
    assert [r.seed for r in load_run_dirs([str(run_dir)]).completed] == [3]
    assert [r.seed for r in load_run_dirs([str(run_dir / "metrics.json")]).completed] == [3]


def test_overlapping_paths_load_each_run_once(sweep):
    runs = load_run_dirs([str(sweep["dir"]), str(sweep["dir"] / "0")])
    assert len(runs.completed) == 12


def test_runs_that_did_not_complete_are_counted_not_loaded(tmp_path):
    write_run(tmp_path / "ok", seed=0, metrics=acc_metrics(0.9))
    write_run(tmp_path / "failed", seed=1, metrics={}, status="failed")
    write_run(tmp_path / "interrupted", seed=2, metrics={}, status="interrupted")
    running = write_run(tmp_path / "running", seed=3, metrics={})
    (running / "metrics.json").unlink()  # still training: history.csv exists, metrics.json not yet
    runs = load_run_dirs([str(tmp_path)])
    assert [r.seed for r in runs.completed] == [0]
    assert sorted(s.reason for s in runs.not_completed) == ["failed", "interrupted", "no metrics.json"]
    assert not runs.malformed


def break_json(run_dir):
    (run_dir / "metrics.json").write_text('{"status": "completed", "seed": ')


def drop_key(key):
    def edit(run_dir):
        summary = json.loads((run_dir / "metrics.json").read_text())
        del summary[key]
        (run_dir / "metrics.json").write_text(json.dumps(summary))
    return edit


def set_key(key, value):
    def edit(run_dir):
        summary = json.loads((run_dir / "metrics.json").read_text())
        summary[key] = value
        (run_dir / "metrics.json").write_text(json.dumps(summary))
    return edit


def remove(name):
    return lambda run_dir: (run_dir / name).unlink()


def rewrite_history(text):
    return lambda run_dir: (run_dir / "history.csv").write_text(text)


def truncate_history(run_dir):
    text = (run_dir / "history.csv").read_text()
    (run_dir / "history.csv").write_text(text[: text.rindex(",")])  # cut inside the last row


@pytest.mark.parametrize(("breakage", "reason"), [
    (break_json, "cannot read metrics.json"),
    (drop_key("status"), "'status'"),
    (drop_key("seed"), "'seed'"),
    (drop_key("components"), "'components'"),
    (drop_key("metrics"), "'metrics'"),
    (set_key("metrics", {"test_acc": "high"}), "test_acc"),
    (set_key("calibration", {"bin_acc": [0.5]}), "calibration"),
    (remove("config.yaml"), "cannot read config.yaml"),
    (remove("history.csv"), "cannot read history.csv"),
    (rewrite_history(""), "history.csv is empty"),
    (rewrite_history("epoch,train_acc\n0,0.5\n"), "lacks columns"),
    (truncate_history, "line 4"),
    (lambda d: (d / "history.csv").write_bytes(b"\xff\xfe\x00bad"), "cannot read history.csv"),
    (lambda d: (d / "config.yaml").write_text("seed: [unclosed"), "cannot read config.yaml"),
])
def test_malformed_run_is_reported_by_path_and_skipped(tmp_path, breakage, reason):
    write_run(tmp_path / "good", seed=0, metrics=acc_metrics(0.9))
    bad = write_run(tmp_path / "bad", seed=1, metrics=acc_metrics(0.8))
    breakage(bad)
    runs = load_run_dirs([str(tmp_path)])
    assert [r.seed for r in runs.completed] == [0]
    assert [s.source for s in runs.malformed] == [str(bad.resolve())]
    assert reason in runs.malformed[0].reason


def test_non_numeric_value_in_a_contract_column_is_malformed(tmp_path):
    bad = write_run(tmp_path / "bad", seed=1, metrics=acc_metrics(0.8))
    text = (bad / "history.csv").read_text().replace("5000.0", "fast", 1)
    (bad / "history.csv").write_text(text)
    runs = load_run_dirs([str(tmp_path)])
    assert not runs.completed and "images_per_s" in runs.malformed[0].reason


def test_empty_history_values_become_nan(tmp_path):
    run_dir = write_run(tmp_path / "run", seed=0, metrics=acc_metrics(0.9))
    lines = (run_dir / "history.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[4] = ""  # val_nll of epoch 0 not produced
    (run_dir / "history.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    history = load_run_dirs([str(run_dir)]).completed[0].history
    assert np.isnan(history["val_nll"][0]) and np.isfinite(history["val_nll"][1:]).all()


def test_null_metric_is_treated_as_absent(tmp_path):
    run_dir = write_run(tmp_path / "run", seed=0, metrics={**acc_metrics(0.9), "test_ece": None})
    assert "test_ece" not in load_run_dirs([str(run_dir)]).completed[0].metrics


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does-not-exist"):
        load_run_dirs([str(tmp_path / "does-not-exist")])


def test_other_file_is_a_user_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="notes.txt"):
        load_run_dirs([str(tmp_path / "notes.txt")])


def test_top_level_balanced_accuracy_and_throughput_are_metrics(tmp_path):
    # long-tailed runs write balanced_acc next to "metrics", not inside it
    run_dir = write_run(tmp_path / "run", seed=0, metrics=acc_metrics(0.9))
    set_key("balanced_acc", 0.75)(run_dir)
    metrics = load_run_dirs([str(run_dir)]).completed[0].metrics
    assert metrics["balanced_acc"] == 0.75 and metrics["images_per_s"] == 5400.0
    assert metrics["test_acc"] == 0.9


def test_job_directory_that_died_before_its_first_epoch_is_counted(tmp_path):
    write_run(tmp_path / "0", seed=0, metrics=acc_metrics(0.9))
    (tmp_path / "1").mkdir()  # the job wrote its config, then died: no history.csv, no metrics.json
    (tmp_path / "1" / "config.yaml").write_text("seed: 1\n")
    wandb_files = tmp_path / "0" / "wandb" / "offline-run-x" / "files"  # W&B's own config.yaml is no run
    wandb_files.mkdir(parents=True)
    (wandb_files / "config.yaml").write_text("_wandb: {}\n")
    runs = load_run_dirs([str(tmp_path)])
    assert [r.seed for r in runs.completed] == [0]
    assert [(s.source, s.reason) for s in runs.not_completed] == [(str((tmp_path / "1").resolve()), "no metrics.json")]
