"""What `regbench probe` checks without torch before it writes anything (regbench.probing.plan): the runs in seed
order with their checkpoints, one line for runs that are missing, not completed or lack the checkpoint, the target
data config composed from --data and checked like a run's, and an output directory that is never overwritten."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from regbench.errors import UserError
from regbench.probing.plan import check_out_dir, probe_runs, target_data_config
from compare_rundirs import acc_metrics, write_run


def probe_source(run_dir: Path, seed: int, status: str = "completed", checkpoints=("best", "last")) -> Path:
    write_run(run_dir, seed=seed, metrics=acc_metrics(0.9), status=status)
    (run_dir / "checkpoints").mkdir()
    for name in checkpoints:
        with zipfile.ZipFile(run_dir / "checkpoints" / f"{name}.ckpt", "w") as archive:
            archive.writestr("archive/data.pkl", b"")
    return run_dir


def test_runs_are_concatenated_by_seed_then_path_with_their_checkpoints(tmp_path):
    for name, seed in (("a", 2), ("b", 0), ("c", 1), ("d", 0)):
        probe_source(tmp_path / "sweep" / name, seed)
    runs = probe_runs([str(tmp_path / "sweep")], "last")
    assert [run.run_dir.name for run in runs] == ["b", "d", "c", "a"]
    assert [run.record.seed for run in runs] == [0, 0, 1, 2]
    assert all(run.checkpoint.path == run.run_dir / "checkpoints" / "last.ckpt" for run in runs)
    assert runs[0].config_hash != runs[2].config_hash


@pytest.mark.parametrize("make, message", [
    (lambda tmp: None, "no RUN_OR_SWEEP_DIR given"),
    (lambda tmp: [str(tmp / "nowhere")], "path '{tmp}/nowhere' does not exist"),
    (lambda tmp: [str(tmp)], "no run found in {tmp}"),
    (lambda tmp: [str(probe_source(tmp / "a", 0)), str(probe_source(tmp / "b", 1, status="failed"))],
     "run {tmp}/b is not completed (failed); probe completed runs only (1 of 2 are not)"),
    (lambda tmp: [str(probe_source(tmp / "a", 0, checkpoints=("last",)))],
     "run {tmp}/a has no best checkpoint (checkpoints/best.ckpt is missing); allowed --checkpoint: best, last"),
])
def test_runs_that_cannot_be_probed_are_one_line(make, message, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    with pytest.raises(UserError) as err:
        probe_runs(make(root) or [], "best")
    assert str(err.value).startswith(message.format(tmp=root.resolve() if "run " in message else root))


def test_the_target_is_a_composed_data_config():
    assert target_data_config([])["name"] == "digits"
    mnist = target_data_config(["data=mnist", "data.batch_size=256", "data.root=/elsewhere"])
    assert (mnist["name"], mnist["batch_size"], mnist["root"]) == ("mnist", 256, "/elsewhere")


@pytest.mark.parametrize("overrides, message", [
    (["norm=groupnorm"], "--data 'norm=groupnorm' is invalid: give data config overrides only"),
    (["data"], "--data 'data' is invalid: give data config overrides only"),
    (["data=no_such"], "data='no_such' is not a known data; allowed: cifar10"),
    (["data.batch_size=0"], "data.batch_size=0 is invalid: must be an integer > 0"),
    (["data.noise.rate=1.5"], "data.noise.rate=1.5 is invalid: must be a probability in [0, 1]"),
    (["data.batch_sise=4"], "data.batch_sise"),
    (["data=digits,mnist"], "--data data=digits,mnist is invalid: a probe has one target, not a sweep"),
])
def test_a_bad_target_is_one_line(overrides, message):
    with pytest.raises(UserError) as err:
        target_data_config(overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_finished_probe_is_never_overwritten_and_an_unfinished_one_resumes(tmp_path):
    check_out_dir(tmp_path / "new")
    (tmp_path / "resume" / "features").mkdir(parents=True)
    check_out_dir(tmp_path / "resume")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "probe.json").write_text("{}")
    with pytest.raises(UserError, match="holds a finished probe"):
        check_out_dir(tmp_path / "done")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("")
    with pytest.raises(UserError, match=r"is not empty \(it holds notes.txt\)"):
        check_out_dir(tmp_path / "other")
