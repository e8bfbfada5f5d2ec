"""`init.from` and its flags checked without torch (regbench.init.source), before any run directory exists: what a
run directory, RUN_DIR/best and RUN_DIR/last resolve to, and one line for each bad value."""
from __future__ import annotations

import json
import struct
import zipfile

import pytest

from regbench.errors import UserError
from regbench.init.source import check_init_config, init_sources
from regbench.rundir_format import config_hash

INIT = {"from": None, "strict": True, "reset_head": False, "freeze": [], "freeze_bn_stats": False}


def run_config(regularizer=None, **init):
    return {"init": {**INIT, **init}, "regularizer": regularizer or {}}


def zip_file(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    return path


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    zip_file(run / "checkpoints" / "best.ckpt")
    zip_file(run / "checkpoints" / "last.ckpt")
    return run


def test_a_run_directory_gives_its_best_checkpoint_and_best_or_last_select(run_dir):
    for given, checkpoint in ((str(run_dir), "best"), (f"{run_dir}/best", "best"), (f"{run_dir}/last", "last")):
        source, = check_init_config(run_config(**{"from": given}))
        assert (source.path, source.checkpoint, source.run_dir) == (
            run_dir / "checkpoints" / f"{checkpoint}.ckpt", checkpoint, run_dir)


def test_weights_files_resolve_to_themselves(tmp_path):
    pt = zip_file(tmp_path / "w.pth")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    safetensors = tmp_path / "w.safetensors"
    safetensors.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    for path in (pt, safetensors):
        source, = check_init_config(run_config(**{"from": str(path)}))
        assert (source.path, source.checkpoint, source.run_dir) == (path, "file", None)


@pytest.mark.parametrize("setup, given, message", [
    (lambda tmp: None, "missing.ckpt", "init.from='missing.ckpt' is invalid: no such file or directory"),
    (lambda tmp: (tmp / "w.bin").write_bytes(b"x"), "w.bin",
     "init.from='w.bin' is invalid: a weights file must end in .ckpt, .pt, .pth, .safetensors (or give a run "
     "directory)"),
    (lambda tmp: (tmp / "w.pt").write_text("not torch"), "w.pt",
     "init.from='w.pt' is invalid: is not a torch.save file (neither a zip archive nor a pickle stream)"),
    (lambda tmp: (tmp / "w.safetensors").write_bytes(struct.pack("<Q", 2) + b"[]"), "w.safetensors",
     "init.from='w.safetensors' is invalid: is not a safetensors file (its header is not a JSON object)"),
    (lambda tmp: (tmp / "plain").mkdir(), "plain",
     "init.from='plain' is invalid: '{tmp}/plain' is not a regbench run directory (no config.yaml); give a run "
     "directory, RUN_DIR/best, RUN_DIR/last or a weights file"),
])
def test_a_bad_source_is_one_line(tmp_path, monkeypatch, setup, given, message):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    with pytest.raises(UserError) as caught:
        check_init_config(run_config(**{"from": given}))
    assert str(caught.value) == message.format(tmp=tmp_path)


def test_a_run_without_the_selected_checkpoint_is_refused(run_dir):
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(UserError, match=r"is invalid: the run has no last checkpoint \(checkpoints/last\.ckpt is "
                                        r"missing\)"):
        check_init_config(run_config(**{"from": f"{run_dir}/last"}))


def test_two_sources_need_coteachings_pair(run_dir):
    pair = [str(run_dir), f"{run_dir}/last"]
    assert len(check_init_config(run_config({"coteaching": {}}, **{"from": pair}))) == 2
    with pytest.raises(UserError, match=r"init\.from=\[.*\] is invalid: a list gives one source per network: 1 here "
                                        r"\(two only with regularizer=\[coteaching\], its network pair\)"):
        check_init_config(run_config(**{"from": pair}))
    with pytest.raises(UserError, match=r"one source per network: 2 here$"):
        check_init_config(run_config({"coteaching": {}}, **{"from": pair[:1]}))


@pytest.mark.parametrize("init, message", [
    ({"reset_head": True}, "init.reset_head=true needs a checkpoint to start from; set init.from"),
    ({"freeze": ["features.0"]}, "init.freeze=['features.0'] needs a checkpoint to start from; set init.from"),
    ({"strict": "yes"}, "init.strict='yes' is invalid: must be true or false"),
    ({"freeze": "features"}, "init.freeze='features' is invalid: must be a list of parameter-name prefixes"),
])
def test_bad_flags_are_one_line(init, message):
    with pytest.raises(UserError) as caught:
        check_init_config(run_config(**init))
    assert str(caught.value).startswith(message)


def test_no_source_resolves_to_none_and_two_sources_never_share_a_run_directory(run_dir):
    assert init_sources(INIT) == [] and check_init_config(run_config()) == []
    hashes = {config_hash({"seed": 0, "init": {**INIT, "from": given}}) for given in (None, str(run_dir),
                                                                                      f"{run_dir}/last")}
    assert len(hashes) == 3
