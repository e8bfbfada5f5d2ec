"""Reading the run directories that the end-to-end tests' `regbench train` commands wrote."""
from __future__ import annotations

import json
from pathlib import Path


def completed_metrics(run_dir: Path) -> dict:
    """The run's metrics.json, which must say the run completed (else the assertion shows its error)."""
    payload = json.loads((run_dir / "metrics.json").read_text())
    assert payload["status"] == "completed", payload.get("error")
    return payload
