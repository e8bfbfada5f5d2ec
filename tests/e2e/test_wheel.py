"""The configs ship inside the wheel: an installed regbench trains from any directory."""
from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from regbench.sweeps.launchers import SUBMITIT_ENTRY_POINT

pytestmark = pytest.mark.slow


def test_wheel_installs_in_a_fresh_venv_and_trains_from_another_directory(tmp_path, repo_root, cli_env):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(repo_root), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist)], check=True, capture_output=True, env=cli_env)
    wheel = next(dist.glob("regbench-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {"regbench/conf/config.yaml", "regbench/conf/data/digits.yaml", "regbench/conf/exp/cutmix.yaml",
            "regbench/conf/hydra/launcher/slurm.yaml", "hydra_plugins/regbench_launcher/__init__.py"} <= shipped
    # hydra/launcher=slurm submits with regbench's submitit executor, which submitit finds by this entry point
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in shipped if n.endswith(".dist-info/entry_points.txt")))
    assert f"[submitit]\nexecutor = {SUBMITIT_ENTRY_POINT}" in entry_points.decode()

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # Dependencies come from the test environment (a path entry, not a site dir, so its editable
    # regbench finder is not loaded); regbench itself only from the wheel.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, env=cli_env)

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run([str(python), "-c", "import regbench; print(regbench.__file__)"], capture_output=True,
                           text=True, cwd=workdir, check=True).stdout
    assert where.startswith(str(site))
    result = subprocess.run([str(env_dir / "bin" / "regbench"), "train", "logger=none", "trainer.max_epochs=1",
                             "backbone.widths=[8]"], cwd=workdir, capture_output=True, text=True,
                            env=cli_env, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(next((workdir / "outputs").rglob("metrics.json")).read_text())
    assert metrics["status"] == "completed"
