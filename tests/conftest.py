"""Shared fixtures: run the real `regbench` command in a subprocess, offline."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# pytest-xdist runs one worker per core: one thread each, in the worker and in the commands it starts, or the
# workers' thread pools spin against each other on the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))


def regbench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    env.pop("WANDB_API_KEY", None)
    # Set by a W&B run made inside the test process: a subprocess would log through that process's W&B service,
    # which loses runs once the test that started it is done with it. Each regbench command starts its own.
    env.pop("WANDB_SERVICE", None)
    return env


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def cli_env() -> dict[str, str]:
    return regbench_env()


class Zygote:
    """tests/zygote.py, started once per test process: it forks each regbench command from an interpreter that has
    already imported torch and Lightning, which a cold `python -m regbench` spends most of its seconds on."""

    def __init__(self):
        self.outputs = Path(tempfile.mkdtemp(prefix="regbench_zygote_"))  # not in cwd: tests check what it holds
        self.process = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "zygote.py")], cwd=REPO_ROOT,
                                        env=regbench_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline()) == {"ready": True}, "tests/zygote.py did not start"

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        out, err = self.outputs / "stdout", self.outputs / "stderr"
        request = {"args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err),
                   "timeout": timeout}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        stdout, stderr = out.read_text(), err.read_text()
        out.unlink()
        err.unlink()
        command = [sys.executable, "-m", "regbench", *args]
        if reply.get("timed_out"):
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, reply["returncode"], stdout, stderr)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.outputs, ignore_errors=True)


# REGBENCH_TESTS_COLD=1 runs every command from a fresh interpreter instead (and where fork does not exist).
WARM = hasattr(os, "fork") and os.environ.get("REGBENCH_TESTS_COLD") != "1"


@pytest.fixture(scope="session")
def zygote():
    if not WARM:
        yield None
        return
    warm = Zygote()
    yield warm
    warm.close()


@pytest.fixture
def run_regbench(tmp_path: Path, zygote):
    """Run the real `regbench ARGS` command in its own process, in tmp_path; returns the CompletedProcess. The
    process is forked from a warm interpreter (see tests/zygote.py); tests that need a cold start, a signal or a
    changed environment start `python -m regbench` themselves."""
    def run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        if zygote is not None:
            return zygote.run(list(args), Path(cwd or tmp_path), regbench_env(), timeout)
        return subprocess.run([sys.executable, "-m", "regbench", *args], cwd=cwd or tmp_path, env=regbench_env(),
                              capture_output=True, text=True, timeout=timeout)
    return run


class OfflineWandbRun:
    """An offline W&B run as W&B's own reader (`wandb leet inspect`, no API key, no network) shows it: every record
    of its run-*.wandb log, its final summary, and the media files beside it."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.files = run_dir / "files"
        records = self._inspect(run_dir)
        self.records = [json.loads(line) for line in records.splitlines() if line.strip()]
        self.state = json.loads(self._inspect(run_dir, "--summary"))
        self.summary = self.state["summary"]

    @staticmethod
    def _inspect(run_dir: Path, *options: str) -> str:
        done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", *options, str(run_dir)],
                              env=regbench_env(), capture_output=True, text=True)
        assert done.returncode == 0, f"wandb leet inspect {run_dir}: {done.stderr[-2000:]}"
        return done.stdout

    def of_type(self, kind: str) -> list[dict]:
        return [record[kind] for record in self.records if record["type"] == kind]

    @property
    def run(self) -> dict:
        return self.of_type("run")[0]

    def metric_definitions(self) -> dict[str, dict]:
        return {metric["name"]: metric for metric in self.of_type("metric") if "name" in metric}

    def history(self) -> list[dict]:
        return [record["item"] for record in self.of_type("history")]

    def table(self, key: str) -> dict:
        """The wandb.Table logged last under `key` (columns and data), read from its file."""
        return json.loads((self.files / self.summary[key]["path"]).read_text())


@pytest.fixture(scope="session")
def offline_wandb_run():
    """Read the only offline W&B run below a folder (a run directory's wandb/, a sweep's summary/wandb/)."""
    def read(folder: Path) -> OfflineWandbRun:
        runs = sorted(Path(folder).glob("**/offline-run-*"))
        assert len(runs) == 1, runs
        return OfflineWandbRun(runs[0])
    return read
