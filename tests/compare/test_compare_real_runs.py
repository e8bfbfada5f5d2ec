"""`regbench compare` on run directories written by the real `regbench train`, not by a fixture's idea of them."""
import json

import pytest

from regbench.compare.cli import main
from regbench.rundir_format import COMPLETED, MetricsKey

pytestmark = pytest.mark.slow


def compare(capsys, *argv):
    code = main([*map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_seed_sweep_groups_by_the_regularizer_and_pairs_the_seeds(real_sweep, capsys):
    code, out, err = compare(capsys, real_sweep, "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["group_keys"] == ["regularizer"]
    assert sorted((g["settings"]["regularizer"], g["n"], tuple(g["seeds"])) for g in document["groups"]) == [
        ("mixup", 2, (0, 1)), ("none", 2, (0, 1))]
    mixup = next(g for g in document["groups"] if g["settings"]["regularizer"] == "mixup")
    assert mixup["vs_baseline"]["test"] in ("paired t-test", "none (identical differences)")


def test_balanced_accuracy_of_long_tailed_runs_can_be_compared(real_sweep, capsys):
    code, out, err = compare(capsys, real_sweep, "--metric", "balanced_acc", "--format", "csv")
    assert code == 0, err
    assert out.splitlines()[0].startswith("rank,regularizer,n,")
    assert len(out.splitlines()) == 3


def test_plots_of_real_runs_include_the_memorization_picture(real_sweep, tmp_path, capsys):
    code, _, err = compare(capsys, real_sweep, "--plots", tmp_path)
    assert code == 0, err
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["learning_curves.png", "memorization.png", "reliability.png", "test_acc_bars.png"]
    assert all((tmp_path / name).stat().st_size > 5000 for name in written)


def test_real_runs_write_every_key_that_the_format_spells(real_sweep):
    """MetricsKey spells metrics.json's keys once for the writers and readers: a real run writes each of them
    (`init` only for a run that starts from saved weights), with the values the readers expect."""
    keys = {value for name, value in vars(MetricsKey).items() if name.isupper()}
    for path in sorted(real_sweep.rglob("metrics.json")):
        payload = json.loads(path.read_text())
        assert keys - payload.keys() == {MetricsKey.INIT}, path
        assert payload["status"] == COMPLETED and payload["error"] is None
        assert payload["epochs"] == 2 and isinstance(payload["metrics"]["test_acc"], float)
        assert payload["attempts"] == [] and len(payload["config_hash"]) == 40
