import json

import numpy as np
import pytest
import wandb
from scipy import stats as scipy_stats

from regbench.compare.cli import main
from regbench.compare.wandb_source import load_wandb_runs
from regbench.errors import UserError


class FakeRun:
    def __init__(self, run_id, state, config, summary, history=()):
        self.id, self.state, self.config, self.summary = run_id, state, config, summary
        self._history = list(history)

    def history(self, samples, pandas):
        assert pandas is False  # pandas is not a dependency
        return self._history


class FakeApi:
    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def runs(self, path, filters):
        self.calls.append((path, filters))
        return self._runs


NONE = [0.90, 0.91, 0.905]
MIXUP = [0.93, 0.925, 0.94]


def epoch_rows(final_acc):
    # a row logged before training (no epoch yet), then per-epoch rows; validation may come in its own row
    # (test_compare_wandb_real.py replays the exact rows real runs log)
    return [{"_step": 0, "train_loss_step": 2.3},
            {"_step": 1, "epoch": 0, "train_acc": final_acc - 0.2, "train_loss": 1.0},
            {"_step": 2, "epoch": 0, "val_acc": final_acc - 0.25},
            {"_step": 3, "epoch": 1, "train_acc": final_acc - 0.1, "train_loss": 0.5, "val_acc": final_acc - 0.05}]


def fake_api():
    runs = []
    for seed, acc in enumerate(NONE):  # flattened config keys, as logged by hand
        runs.append(FakeRun(f"n{seed}", "finished",
                            {"seed": seed, "norm_name": "batchnorm", "regularizer_names": [], "_wandb": {"x": 1}},
                            {"test_acc": acc, "test_nll": 0.3, "_runtime": 12.0, "calibration": {"bins": []}},
                            epoch_rows(acc)))
    for seed, acc in enumerate(MIXUP):  # nested config, as Lightning's WandbLogger logs the Hydra config
        runs.append(FakeRun(f"m{seed}", "finished",
                            {"seed": seed, "norm": {"name": "batchnorm"}, "regularizer": {"mixup": {"alpha": 0.2}}},
                            {"test_acc": acc, "test_nll": 0.2}, epoch_rows(acc)))
    runs.append(FakeRun("crashed", "crashed", {"seed": 5}, {}))
    runs.append(FakeRun("running", "running", {"seed": 6}, {}))
    runs.append(FakeRun("noseed", "finished", {"norm_name": "batchnorm"}, {"test_acc": 0.5}))
    return FakeApi(runs)


def test_loads_records_from_the_api():
    api = fake_api()
    runs = load_wandb_runs("lab/regbench", "sweep-1", api=api)
    assert api.calls == [("lab/regbench", {"group": "sweep-1"})]
    assert len(runs.completed) == 6
    assert sorted(s.reason for s in runs.not_completed) == ["crashed", "running"]
    assert [s.source for s in runs.malformed] == ["wandb:lab/regbench/noseed"]
    first = runs.completed[0]
    assert first.components == {"norm": "batchnorm", "regularizer": "none"}
    assert first.metrics == {"test_acc": 0.90, "test_nll": 0.3}  # internal and non-numeric values dropped
    assert "_wandb" not in first.config
    assert list(first.history["epoch"]) == [0, 1]
    assert list(first.history["val_acc"]) == pytest.approx([0.65, 0.85])  # merged from the epoch's rows
    assert runs.completed[3].components == {"norm": "batchnorm", "regularizer": "mixup"}


def test_compare_reads_wandb_through_the_injected_api(capsys):
    code = main(["--wandb", "lab/regbench", "--group", "sweep-1", "--format", "json"], wandb_api=fake_api())
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert code == 0 and document["group_keys"] == ["regularizer"]
    mixup, none = document["groups"]
    assert mixup["label"] == "regularizer=mixup" and none["label"] == "regularizer=none"
    assert mixup["mean"] == pytest.approx(np.mean(MIXUP))
    assert mixup["vs_baseline"]["test"] == "paired t-test"
    assert mixup["vs_baseline"]["p_value"] == pytest.approx(scipy_stats.ttest_rel(MIXUP, NONE).pvalue)
    assert "skipped malformed run wandb:lab/regbench/noseed" in captured.err
    assert "ignored 2 not completed (crashed: 1, running: 1)" in captured.err


def test_wandb_runs_plot_learning_curves(tmp_path, capsys):
    code = main(["--wandb", "lab/regbench", "--plots", str(tmp_path)], wandb_api=fake_api())
    capsys.readouterr()
    assert code == 0
    assert (tmp_path / "learning_curves.png").stat().st_size > 5000
    assert not (tmp_path / "reliability.png").exists()  # W&B runs carry no calibration bins


def test_without_group_all_runs_of_the_project_are_read():
    api = fake_api()
    load_wandb_runs("lab/regbench", None, api=api)
    assert api.calls == [("lab/regbench", {})]


def test_bad_project_path_is_a_user_error():
    with pytest.raises(UserError, match="--wandb 'regbench' is invalid: expected ENTITY/PROJECT"):
        load_wandb_runs("regbench", None, api=fake_api())


def test_unreachable_wandb_is_a_user_error(capsys):
    class OfflineApi:
        def runs(self, path, filters):
            raise wandb.errors.CommError("Could not reach api.wandb.ai\nretrying...")

    code = main(["--wandb", "lab/regbench"], wandb_api=OfflineApi())
    err = capsys.readouterr().err
    assert code == 2
    expected = "regbench compare: error: cannot read W&B runs of 'lab/regbench': Could not reach api.wandb.ai"
    assert err.strip() == expected
