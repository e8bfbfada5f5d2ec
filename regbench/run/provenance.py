"""Where a run's code came from: the git state of the regbench source tree and the versions of its packages."""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import regbench
from regbench.rundir_format import MetricsKey

VERSIONED_PACKAGES = ("regbench", "torch", "torchvision", "lightning", "torchmetrics", "hydra-core", "timm", "numpy")


def _git(source: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit of the regbench source tree and whether it has uncommitted changes; both None unless the source
    is itself a git checkout (an installed wheel inside some other repository reports nothing)."""
    source = Path(__file__).resolve().parents[2]
    top = _git(source, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != source:
        return {"git_commit": None, "git_dirty": None}
    changes = _git(source, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": _git(source, "rev-parse", "HEAD"),
            "git_dirty": bool(changes) if changes is not None else None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance() -> dict[str, Any]:
    """metrics.json's record of what produced the run: the source's commit and the packages' versions."""
    return {**git_state(), MetricsKey.VERSIONS: {**package_versions(), "regbench": regbench.__version__}}
