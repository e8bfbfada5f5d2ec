"""What a probe will do, checked without torch before anything is written: the completed runs in their order,
each one's checkpoint, the target data config composed from its overrides, and the output directory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regbench.compare.runs import RunRecord, load_run_dirs
from regbench.errors import ParamError, UserError
from regbench.init.source import CHECKPOINT_SELECTORS, InitSource, run_dir_source, selected_checkpoint
from regbench.rundir_format import config_hash

PROBE_FILE = "probe.json"
FEATURES_DIR = "features"
CONFIG_MODULE = "regbench.conf"


@dataclass(frozen=True)
class ProbeRun:
    """One source run: where it is, its seed and config, and the checkpoint its features come from."""

    record: RunRecord
    checkpoint: InitSource

    @property
    def run_dir(self) -> Path:
        return Path(self.record.source)

    @property
    def config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def probe_runs(paths: list[str], checkpoint: str) -> list[ProbeRun]:
    """Every run at or below `paths`, all completed, in the order they are concatenated: by seed, then by path."""
    if not paths:
        raise UserError("no RUN_OR_SWEEP_DIR given: give at least one completed run or a sweep directory")
    runs = load_run_dirs(paths)
    if runs.malformed:
        bad = runs.malformed[0]
        raise UserError(f"run {bad.source} is unreadable: {bad.reason}; probe completed runs only")
    if runs.not_completed:
        bad = runs.not_completed[0]
        raise UserError(f"run {bad.source} is not completed ({bad.reason}); probe completed runs only "
                        f"({len(runs.not_completed)} of {len(runs.not_completed) + len(runs.completed)} are not)")
    if not runs.completed:
        raise UserError(f"no run found in {', '.join(paths)}: give completed run or sweep directories")
    ordered = sorted(runs.completed, key=lambda record: (record.seed, record.source))
    for record in ordered:
        _, missing = selected_checkpoint(Path(record.source), checkpoint)
        if missing:
            raise UserError(f"run {record.source} {missing}; allowed --checkpoint: {', '.join(CHECKPOINT_SELECTORS)}")
    return [ProbeRun(record, run_dir_source(record.source, Path(record.source), checkpoint)) for record in ordered]


def check_data_overrides(overrides: list[str]) -> None:
    """Only the data group and its keys: the target is a dataset, the runs fix everything else."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if "=" not in override or not (key == "data" or key.startswith("data.")):
            raise UserError(f"--data {override!r} is invalid: give data config overrides only, e.g. data=mnist or "
                            f"data.batch_size=256")


def target_data_config(overrides: list[str]) -> dict[str, Any]:
    """The resolved data config the overrides compose (the root config's data otherwise), checked like a run's."""
    from hydra import initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from regbench.errors import one_line
    from regbench.specs.data import DATASETS
    from regbench.specs.data_values import check_data_values
    from regbench.sweeps.preflight import check_group_choices, compose_job

    check_data_overrides(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse --data: {one_line(err)}") from None
    if any(override.is_sweep_override() for override in parsed):
        raise UserError(f"--data {' '.join(overrides)} is invalid: a probe has one target, not a sweep")
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        check_group_choices(parsed)
        resolved, _ = compose_job(overrides, {})
    data = resolved["data"]
    DATASETS.entry(data["name"])
    try:
        check_data_values(data)
    except ParamError as err:
        raise err.at("data") from None
    return data


def check_out_dir(out: Path) -> None:
    """A finished probe is never overwritten; a directory that holds only an unfinished probe's feature cache
    resumes; anything else there is refused."""
    if out.is_file():
        raise UserError(f"--out {str(out)!r} is a file: give a directory")
    if (out / PROBE_FILE).exists():
        raise UserError(f"--out {str(out)!r} holds a finished probe ({PROBE_FILE}); give another directory")
    others = sorted(p.name for p in out.iterdir() if p.name != FEATURES_DIR) if out.is_dir() else []
    if others:
        raise UserError(f"--out {str(out)!r} is not empty (it holds {others[0]}); give a new directory or an "
                        f"unfinished probe's")
