"""`regbench compare --wandb` on what regbench really sends to W&B: the config from `describe.wandb_config` and the
logger calls of real runs (replayed from their CSV logger, which receives the same calls in the same order)."""
import csv
import json

import pytest
import yaml

from regbench.compare.cli import main
from regbench.loggers import wandb_config

pytestmark = pytest.mark.slow


class ReplayedRun:
    """What `wandb.Api().runs()` yields for one finished regbench run."""

    def __init__(self, run_dir):
        self.id, self.state = run_dir.name, "finished"
        self.config = wandb_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
        self._history = []
        with (run_dir / "csv_logs" / "metrics.csv").open() as handle:
            for step, row in enumerate(csv.DictReader(handle)):
                logged = {k: float(v) for k, v in row.items() if v != "" and k != "step"}
                if "epoch" in logged:
                    logged["epoch"] = int(logged["epoch"])
                logged.update({"trainer/global_step": int(row["step"]), "_step": step})
                self._history.append(logged)
        self.summary = {}
        for logged in self._history:  # W&B's summary: the last value logged under each key
            self.summary.update(logged)

    def history(self, samples, pandas):
        return self._history


class ReplayApi:
    def __init__(self, sweep):
        self._runs = [ReplayedRun(d) for d in sorted(sweep.iterdir()) if (d / "metrics.json").is_file()]

    def runs(self, path, filters):
        return self._runs


def compare_json(capsys, *argv, api=None):
    code = main([*map(str, argv), "--format", "json"], wandb_api=api)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def by_regularizer(document):
    return {g["settings"]["regularizer"]: g for g in document["groups"]}


def test_wandb_runs_group_like_the_run_directories(real_sweep, capsys):
    local = compare_json(capsys, real_sweep, "--metric", "val_acc")
    remote = compare_json(capsys, "--wandb", "lab/regbench", "--metric", "val_acc", api=ReplayApi(real_sweep))
    assert remote["group_keys"] == local["group_keys"] == ["regularizer"]
    for name, group in by_regularizer(local).items():
        twin = by_regularizer(remote)[name]
        assert (twin["n"], twin["seeds"]) == (group["n"], group["seeds"]) == (2, [0, 1])
        assert twin["mean"] == pytest.approx(group["mean"], abs=1e-6)


def test_wandb_history_has_the_per_epoch_training_curves(real_sweep, capsys, tmp_path):
    from regbench.compare.wandb_source import load_wandb_runs

    api = ReplayApi(real_sweep)
    records = {r.source.rsplit("/", 1)[-1]: r for r in load_wandb_runs("lab/regbench", None, api=api).completed}
    for run in api._runs:
        with (real_sweep / run.id / "history.csv").open() as handle:
            local = list(csv.DictReader(handle))
        remote = records[run.id].history
        for column in ("train_acc", "train_loss", "train_acc_clean", "train_acc_noisy", "val_acc"):
            expected = [float(row[column]) for row in local]
            assert remote[column][:len(expected)] == pytest.approx(expected, abs=1e-6), column
    code = main(["--wandb", "lab/regbench", "--plots", str(tmp_path)], wandb_api=api)
    capsys.readouterr()
    assert code == 0 and (tmp_path / "memorization.png").stat().st_size > 5000
