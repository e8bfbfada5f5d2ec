"""Shared fixtures: run the real `regbench` command in a subprocess, offline."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
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


class WarmProcess:
    """What the tests use of subprocess.Popen (pid, poll, wait, send_signal, kill, communicate), for a command the
    zygote forked; its stdout and stderr are read once it has exited."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str], stdout: Path, stderr: Path):
        self.zygote, self.pid, self.args = zygote, pid, args
        self.stdout_file, self.stderr_file = stdout, stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.request({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            reply = self.zygote.request({"op": "wait", "pid": self.pid, "timeout": timeout})
            if reply.get("timed_out"):
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = reply["returncode"]
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # gone already, as Popen lets it be
                os.kill(self.pid, signum)

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # and the processes it started, as a timeout does

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        outputs = []
        for path in (self.stdout_file, self.stderr_file):
            outputs.append(path.read_text() if path.exists() else "")
            path.unlink(missing_ok=True)
        return outputs[0], outputs[1]


class Zygote:
    """tests/zygote.py, started once per test process: it forks each regbench command from an interpreter that has
    already imported torch and Lightning, which a cold `python -m regbench` spends most of its seconds on."""

    def __init__(self):
        self.outputs = Path(tempfile.mkdtemp(prefix="regbench_zygote_"))  # not in cwd: tests check what it holds
        self.started = 0
        self.process = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "zygote.py")], cwd=REPO_ROOT,
                                        env=regbench_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.process.stdout.readline()) == {"ready": True}, "tests/zygote.py did not start"

    def request(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, args: list[str], cwd: Path, env: dict[str, str], script: str | None = None) -> WarmProcess:
        self.started += 1
        out, err = self.outputs / f"{self.started}.stdout", self.outputs / f"{self.started}.stderr"
        reply = self.request({"op": "start", "args": args, "cwd": str(cwd), "env": env, "stdout": str(out),
                              "stderr": str(err), "script": script})
        return WarmProcess(self, reply["pid"], command_line(args, script), out, err)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        shutil.rmtree(self.outputs, ignore_errors=True)


def command_line(args: list[str], script: str | None) -> list[str]:
    """The cold command a warm one stands in for: `python -m regbench ARGS`, or `python SCRIPT ARGS`."""
    return [sys.executable, script, *args] if script else [sys.executable, "-m", "regbench", *args]


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


@pytest.fixture(scope="session")
def start_command(zygote):
    """Start `regbench ARGS` (or `python SCRIPT ARGS`) in its own process without waiting for it; returns a
    Popen or its warm stand-in, both with stdout and stderr captured."""
    def start(args: list[str], cwd: Path, env: dict[str, str] | None = None, script: str | None = None):
        env = regbench_env() if env is None else env
        if zygote is not None:
            return zygote.start(list(args), Path(cwd), env, script)
        return subprocess.Popen(command_line(list(args), script), cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return start


@pytest.fixture(scope="session")
def run_command(start_command):
    """Run `regbench ARGS` (or `python SCRIPT ARGS`) in its own process, forked from a warm interpreter (see
    tests/zygote.py), and wait for it; returns the CompletedProcess, as subprocess.run does."""
    def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
            script: str | None = None) -> subprocess.CompletedProcess:
        process = start_command(args, cwd, env, script)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout, stdout, stderr) from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return run


@pytest.fixture
def run_regbench(tmp_path: Path, run_command):
    """Run the real `regbench ARGS` command in its own process, in tmp_path (or cwd); returns the CompletedProcess.
    Tests that need a cold start (what it imports, a read-only mount) start `python -m regbench` themselves."""
    def run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        return run_command(list(args), cwd or tmp_path, timeout=timeout)
    return run


@pytest.fixture
def absent_data_files(monkeypatch) -> list[str]:
    """The datasets whose raw files the config checks look for, listed instead of looked for: for tests of configs
    on datasets this machine may not have (their loading is tested on generated files)."""
    import regbench.config.planned

    asked = []
    monkeypatch.setattr(regbench.config.planned, "check_data_files", lambda data: asked.append(data["name"]))
    monkeypatch.setattr(regbench.config.planned, "_PLANNED", {})  # configs this process planned are asked again
    return asked


@pytest.fixture
def start_regbench(tmp_path: Path, start_command):
    """Start `regbench ARGS` in tmp_path (or cwd) without waiting for it; for tests that signal or kill it."""
    def start(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
        return start_command(list(args), cwd or tmp_path, env)
    return start


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
