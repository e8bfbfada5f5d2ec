"""Shared fixtures: run the real `regbench` command in a subprocess, offline."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def regbench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    env.pop("WANDB_API_KEY", None)
    return env


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def cli_env() -> dict[str, str]:
    return regbench_env()


@pytest.fixture
def run_regbench(tmp_path: Path):
    """Run `python -m regbench ARGS` in tmp_path; returns the CompletedProcess."""
    def run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "regbench", *args], cwd=cwd or tmp_path, env=regbench_env(),
                              capture_output=True, text=True, timeout=timeout)
    return run
