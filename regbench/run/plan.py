"""What a run settles before it trains: whether its directory may be used, where it stands there (fresh, done,
or resumable from which checkpoint), and how W&B files it."""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from regbench.errors import UserError
from regbench.rundir_format import (CHECKPOINT_DIR, COMPLETED, KILLED, LAST_CHECKPOINT, METRICS_FILE,
                                    PREVIOUS_CHECKPOINT, RESULT_FILES, RUNNING, MetricsKey, config_hash, read_json,
                                    stored_config_hash)
from regbench.sweepdir_format import IndexKey, SweepIndex


@dataclass(frozen=True)
class Resumption:
    """What a run directory already holds for a start with the same config."""

    completed: dict[str, Any] | None = None  # metrics.json of a finished run: nothing is left to do
    checkpoint: Path | None = None  # the last checkpoint of an unfinished run: training continues from it
    attempts: tuple[dict[str, Any], ...] = ()  # how earlier attempts ended; kept in the next metrics.json
    notice: str | None = None  # one line for the user: an unreadable checkpoint and what is done about it


def inspect_run_dir(run_dir: Path, config_hash_: str, dir_key: str = "hydra.run.dir") -> Resumption:
    """Decide how a start with config hash `config_hash_` may use `run_dir`: fresh, skip, or resume.

    A directory holding a run with another config is refused, so no result is ever overwritten.
    """
    taken = [name for name in RESULT_FILES if (run_dir / name).exists()]
    if not taken:
        return Resumption()
    if stored_config_hash(run_dir) != config_hash_:
        raise UserError(f"{dir_key}={str(run_dir)!r} already holds a run with another config ({taken[0]} "
                        f"exists); choose a new directory so no result is overwritten")
    metrics = read_json(run_dir / METRICS_FILE)
    if metrics is not None and metrics.get(MetricsKey.STATUS) == COMPLETED:
        return Resumption(completed=metrics)
    if metrics is None:
        last = {MetricsKey.STATUS: KILLED,
                MetricsKey.ERROR: "ended without writing metrics.json (killed, or the machine stopped)"}
    elif metrics.get(MetricsKey.STATUS) == RUNNING:
        last = {MetricsKey.STATUS: KILLED, MetricsKey.ERROR: "ended while running (killed, or the machine stopped)"}
    else:
        last = {key: metrics.get(key)
                for key in (MetricsKey.STATUS, MetricsKey.ERROR, MetricsKey.WALL_TIME_S, MetricsKey.EPOCHS)}
    earlier = tuple(metrics.get(MetricsKey.ATTEMPTS, [])) if metrics else ()
    checkpoint, notice = resume_checkpoint(run_dir / CHECKPOINT_DIR)
    return Resumption(checkpoint=checkpoint, attempts=(*earlier, last), notice=notice)


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be loaded, or None when it is whole. torch.save writes a zip archive
    whose directory is at its end and whose entries carry CRC-32 checksums: reading it through finds a file that
    is empty, cut short, or damaged anywhere; torch then opens it as Lightning will (memory-mapped, so the weights
    are not read a second time)."""
    try:
        if path.stat().st_size == 0:
            return "an empty file"
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged:
            return f"its entry {damaged} is damaged"
        import torch  # only when a checkpoint is there to check: planning stays light otherwise

        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001  (damaged bytes can fail in any way; each means "unreadable")
        # The first sentence: torch's reader adds a paragraph of advice.
        first = str(err).strip().split("\n")[0].split(". ")[0]
        return f"{type(err).__name__}: {first}" if first else type(err).__name__
    return None


def resume_checkpoint(checkpoints: Path) -> tuple[Path | None, str | None]:
    """The checkpoint an unfinished run resumes from: last.ckpt, or previous.ckpt when last.ckpt is unreadable
    (or missing after a kill between their two renames), or none; and the line that tells the user about an
    unreadable one. An unreadable file is left in place: the next checkpoint replaces it."""
    unreadable = []
    for path in (checkpoints / LAST_CHECKPOINT, checkpoints / PREVIOUS_CHECKPOINT):
        if not path.is_file():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path, (f"{'; '.join(unreadable)}; resuming from {path.name}" if unreadable else None)
        unreadable.append(f"{path} is unreadable ({problem})")
    if not unreadable:
        return None, None
    return None, (f"{'; '.join(unreadable)}; no readable checkpoint is left, so the run starts over (earlier "
                  f"attempts stay in metrics.json)")


@dataclass(frozen=True)
class HydraJob:
    """The Hydra job a run belongs to: a single run, or job `num` of the sweep in `sweep_dir`."""

    multirun: bool
    sweep_dir: Path | None = None
    num: int = 0
    overrides: tuple[str, ...] = ()

    @staticmethod
    def current() -> "HydraJob":
        if not HydraConfig.initialized():
            return HydraJob(multirun=False)
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN:
            return HydraJob(multirun=False, overrides=tuple(hydra.overrides.task))
        return HydraJob(multirun=True, sweep_dir=Path(hydra.sweep.dir), num=int(hydra.job.num),
                        overrides=tuple(hydra.overrides.task))


@dataclass(frozen=True)
class RunPlan:
    run_dir: Path
    resumption: Resumption
    wandb_group: str
    wandb_name: str
    wandb_job_type: str | None
    wandb_id: str  # stable for the run directory, so a resumed run continues the same W&B run


def job_type(overrides: list[str], varying: list[str], limit: int = 64) -> str | None:
    """W&B job_type for a sweep job: its values of the varying keys, e.g. `regularizer=[cutmix,ema] norm=gn`."""
    wanted = {key.lstrip("+~") for key in varying}
    parts = [item for item in overrides if item.split("=", 1)[0].lstrip("+~") in wanted]
    text = " ".join(parts)
    if len(text) <= limit:
        return text or None
    # Cut to W&B's length with a digest of the whole, so two long settings never share a job type.
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{text[:limit - len(digest) - 1]}~{digest}"


def plan_run(resolved: dict[str, Any], job: HydraJob) -> RunPlan:
    run_dir = Path(resolved["run_dir"])
    digest = config_hash(resolved)
    resumption = inspect_run_dir(run_dir, digest, "hydra.sweep.dir" if job.multirun else "hydra.run.dir")
    run_id = hashlib.sha1(f"{run_dir.resolve()}|{digest}".encode()).hexdigest()[:16]
    if not job.multirun:
        group = resolved["exp_name"]
        return RunPlan(run_dir, resumption, group, f"{group}/{run_dir.name}", None, run_id)
    # Every job of a sweep shares its group (recorded when the sweep launched); job_type holds the varying values.
    index = SweepIndex(job.sweep_dir).read()
    kind = job_type(list(job.overrides), index[IndexKey.VARYING])
    name = f"{kind or 'job'} seed={resolved['seed']}"
    return RunPlan(run_dir, resumption, index[IndexKey.WANDB_GROUP], name, kind, run_id)
