"""probe.json and the printed table: the probe accuracy for each number k of concatenated runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from regbench.probing.plan import PROBE_FILE, ProbeRun
from regbench.rundir_format import write_json_atomic


def probe_payload(runs: list[ProbeRun], target: Mapping[str, Any], settings: Mapping[str, Any],
                  results: list[dict[str, Any]], chance: float) -> dict[str, Any]:
    return {
        "runs": [{"run_dir": str(run.run_dir), "seed": run.record.seed, "config_hash": run.config_hash,
                  "checkpoint": run.checkpoint.checkpoint, "components": run.record.components}
                 for run in runs],
        "order": "by seed, then by run directory; k concatenates the first k runs",
        "target_data": dict(target),
        "probe": dict(settings),
        "chance_acc": chance,
        "results": results,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'k':>3}  {'features':>8}  {'train_acc':>9}  {'test_acc':>8}"]
    lines += [f"{r['k']:>3}  {r['num_features']:>8}  {r['train_acc']:>9.4f}  {r['test_acc']:>8.4f}" for r in results]
    return "\n".join(lines)


def write_probe(out: Path, payload: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROBE_FILE
    write_json_atomic(path, payload)
    return path
