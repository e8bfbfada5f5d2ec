"""Preflight of `regbench train`: compose the config the way Hydra will and check it (every job of a sweep), so
every mistake is one line before Hydra creates a directory or any job trains. Two stages: the checks that need no
torch run for every job first (all a command that only prints the config runs); the checks that need the model
code (regbench.config.buildable, imported only then) follow for a run that will train."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from regbench.config.keys import check_override_keys, is_key_override
from regbench.config.validate import OPTIMIZABLE_METRICS, check_config, check_seeds
from regbench.errors import UserError, check, one_line
from regbench.command import check_output_dir
from regbench.run.plan import inspect_run_dir
from regbench.rundir_format import config_hash
from regbench.sweeps.index import varying_keys
from regbench.sweeps.launchers import LAUNCHER_TARGET, REMOTE_LAUNCHERS, check_slurm_launcher

CONFIG_MODULE = "regbench.conf"
# Hydra's grid sweeper; any other searches, ranking its jobs by the metric they return.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
GROUPS = ("data", "backbone", "norm", "regularizer", "calibrate", "eval", "optim", "sched", "trainer", "logger", "exp",
          "sweep", "hparams_search")
# Hydra's own groups a user selects on the command line, checked the same way.
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")
def group_options(group: str) -> list[str]:
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def _selected_names(value: Any) -> Iterable[str]:
    """Every option name an override selects: a name, a list of names, a sweep of either."""
    if isinstance(value, ChoiceSweep):
        value = value.list
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _selected_names(item)
    elif value is not None:
        yield str(value)


def check_group_choices(overrides: list[Override]) -> None:
    for override in overrides:
        group = override.key_or_group
        if group not in GROUPS + HYDRA_GROUPS or override.is_delete():
            continue
        allowed = group_options(group)
        for name in _selected_names(override.value()):
            if name not in allowed:
                raise UserError(f"{override.get_key_element()}={name!r} is not a known {group}; "
                                f"allowed: {', '.join(allowed)}")


def compose_checked(overrides: list[str]) -> tuple[dict[str, Any], Any]:
    """The resolved run config (without `hydra`) and the hydra config for `overrides`, as one-line errors."""
    try:
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            hydra_cfg = cfg.pop("hydra")
            cfg.run_dir = "."  # the hydra: resolver needs a live run; the real one is checked in the job
        return OmegaConf.to_container(cfg, resolve=True), hydra_cfg
    except (HydraException, OmegaConfBaseException) as err:
        raise UserError(one_line(err)) from None


@functools.cache  # regbench's config groups never change within a process, and asking Hydra is slow
def is_group(key: str) -> bool:
    return bool(group_options(key))


def base_config(parsed: list[Override], bases: dict[tuple[str, ...], dict[str, Any]]) -> dict[str, Any]:
    """The config of the group selections alone (no key overrides): every key the selected options' YAML
    defines. `bases` caches it per selection, as the jobs of a sweep share a few."""
    selections = tuple(o.input_line for o in parsed if is_group(o.key_or_group) and not o.is_delete())
    if selections not in bases:
        try:
            bases[selections] = OmegaConf.to_container(compose("config", overrides=list(selections)), resolve=False)
        except (HydraException, OmegaConfBaseException) as err:
            raise UserError(one_line(err)) from None
    return bases[selections]


def compose_job(job: list[str], bases: dict[tuple[str, ...], dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """compose_checked for one job, whose overrides may add or delete only keys that regbench reads and keep the
    kind of a group's mappings and lists; a key that Hydra cannot override is reported with the keys that exist.
    (A top-level key, e.g. seed=1, needs no base config: the run config's own checks see its kind.) Groups that
    only the job's own search path adds (a claim card's `+arm=...`) are groups too: Hydra's choices say so."""
    parsed = OverridesParser.create().parse_overrides(job)
    try:
        resolved, hydra_cfg = compose_checked(job)
    except UserError:
        check_override_keys([o for o in parsed if is_key_override(o, is_group)], base_config(parsed, bases))
        raise
    chosen = set(hydra_cfg.runtime.choices)
    keys = [o for o in parsed if is_key_override(o, lambda key: key in chosen or is_group(key))]
    if any(o.is_add() or o.is_force_add() or o.is_delete() or "." in o.key_or_group for o in keys):
        check_override_keys(keys, base_config(parsed, bases))
    return resolved, hydra_cfg


def sweep_jobs(overrides: list[str], parsed: list[Override],
               bases: dict[tuple[str, ...], dict[str, Any]] | None = None) -> list[list[str]] | None:
    """Each job's overrides, expanded the way Hydra's basic sweeper will (None for other sweepers, e.g. Optuna,
    whose jobs are only known while they run)."""
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    _, hydra_cfg = compose_job(fixed, {} if bases is None else bases)
    if hydra_cfg.sweeper._target_ != BASIC_SWEEPER:
        return None
    params = [f"{key}={value}" for key, value in (hydra_cfg.sweeper.params or {}).items()]
    try:
        expanded = OverridesParser.create().parse_overrides([*params, *overrides])
    except HydraException as err:
        raise UserError(f"cannot parse hydra.sweeper.params: {one_line(err)}") from None
    return [job for batch in BasicSweeper.split_arguments(expanded, None) for job in batch]


def check_sweep(hydra_cfg: Any, resolved: dict[str, Any], overrides: list[str]) -> None:
    """What a sweep's launcher, sweeper and summary need beyond the run config."""
    if hydra_cfg.launcher._target_ == LAUNCHER_TARGET:
        check_slurm_launcher(hydra_cfg.launcher, resolved["trainer"])
    sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=True)
    params = sweeper.pop("params", None)  # the grid's values, e.g. seed: 0,1,2, are checked as each job's config
    check_seeds(sweeper, "hydra.sweeper.", optional=True)
    if sweeper["_target_"] != BASIC_SWEEPER and resolved["optimized_metric"] is None:
        # A searching sweeper (Optuna) ranks the jobs by what they return: without a metric they return nothing.
        raise UserError(f"hydra/sweeper={hydra_cfg.runtime.choices['hydra/sweeper']} needs optimized_metric, the "
                        f"metric its jobs return ({', '.join(OPTIMIZABLE_METRICS)}); or use a +hparams_search=NAME "
                        f"preset")
    check_sweep_summary(resolved["sweep_summary"], varying_keys(overrides, params))


def check_sweep_summary(summary: dict[str, Any], varying: list[str]) -> None:
    """The summary's metric is a name, and its baseline names keys the sweep varies (any key where it varies a
    preset, `+exp=a,b`, which may set anything)."""
    from regbench.compare.grouping import parse_baseline  # a sweep's only: comparing imports numpy

    metric, baseline = summary["metric"], summary["baseline"]
    check(isinstance(metric, str) and metric != "", "sweep_summary.metric", metric,
          "must be a metric of metrics.json, e.g. test_acc")
    if baseline is None:
        return
    keys = [key.lstrip("+~") for key in varying]
    try:
        spec = parse_baseline(baseline) if isinstance(baseline, str) else None
    except UserError:
        spec = None
    unknown = [] if spec is None or "exp" in keys else [key for key in spec if key not in keys]
    check(spec is not None and not unknown, "sweep_summary.baseline", baseline,
          f"must be null or KEY=VALUE[,KEY=VALUE] over keys the sweep varies ({', '.join(keys) or 'none'})")


class CheckedJob(NamedTuple):
    overrides: list[str]
    config: dict[str, Any]  # resolved, as the job will run it
    inactive: list[dict[str, str]]  # components that would do nothing (see check_planned_run; none when not `builds`)


def preflight(overrides: list[str], multirun: bool, writes: bool = True, builds: bool = True) -> list[CheckedJob]:
    """Compose and check the config the way Hydra will, turning every mistake into one UserError line; for a
    sweep, every job's config, so a typo fails before any job starts. `writes`: the command will write runs (not
    only print the config), so the output directory must be usable too. `builds`: also run the checks that need
    the model code (torch). Returns each checked job."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse the overrides: {one_line(err)}") from None
    bases: dict[tuple[str, ...], dict[str, Any]] = {}
    composed = []  # (job, resolved config, whether it trains on this machine)
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        check_group_choices(parsed)
        jobs = sweep_jobs(overrides, parsed, bases) if multirun else [overrides]
        for job in jobs or [[o.input_line for o in parsed if not o.is_sweep_override()]]:
            with job_errors(job, multirun):
                resolved, hydra_cfg = compose_job(job, bases)
                check_config(resolved)
                sweeping = multirun or hydra_cfg.mode == RunMode.MULTIRUN  # a preset may sweep: +hparams_search
                if sweeping:
                    check_sweep(hydra_cfg, resolved, overrides)
                composed.append((job, resolved, not (sweeping and hydra_cfg.launcher._target_ in REMOTE_LAUNCHERS)))
    if writes:
        check_output_dirs(overrides, hydra_cfg, resolved, sweeping)
    if not builds:
        return [CheckedJob(job, resolved, []) for job, resolved, _ in composed]
    from regbench.config.planned import check_planned_run  # numpy, the data facts: only for a run that trains

    planned = []
    for job, resolved, on_this_machine in composed:
        with job_errors(job, multirun):
            planned.append(check_planned_run(resolved, on_this_machine))
    from regbench.config.buildable import check_buildable  # torch and the model code: only for a run that trains

    checked = []
    for (job, resolved, on_this_machine), run in zip(composed, planned):
        with job_errors(job, multirun):
            check_buildable(resolved, run.shape, on_this_machine)
            checked.append(CheckedJob(job, resolved, [dict(component) for component in run.inactive]))
    if sweeping:
        check_sweep_data([(job, resolved) for job, resolved, on_this_machine in composed if on_this_machine])
    return checked


def check_sweep_data(jobs: list[tuple[list[str], dict[str, Any]]]) -> None:
    """Load each dataset a sweep trains on here once (a job loads it again), so a corrupt data file is one line
    before any job starts, not one failure per job (a missing one is refused earlier, without torch). Jobs on
    another machine (SLURM) read files this one may not have: they are left to their own checks."""
    from regbench.data.module import load_images  # torch: only once every config check has passed

    seen = set()
    for job, resolved in jobs:
        data = resolved["data"]
        key = (data["name"], str(data["root"]), data["download"])
        if key not in seen:
            seen.add(key)
            with job_errors(job, multirun=True):
                load_images(data)


@contextlib.contextmanager
def job_errors(job: list[str], multirun: bool) -> Iterator[None]:
    """A sweep job's mistake names the job."""
    try:
        yield
    except UserError as err:
        raise UserError(f"{err} (in the sweep job {' '.join(job)})" if multirun else str(err)) from None


def check_output_dirs(overrides: list[str], hydra_cfg: Any, resolved: dict[str, Any], sweeping: bool) -> None:
    """The directory the command will write into must be usable."""
    if sweeping:
        check_output_dir(Path(hydra_cfg.sweep.dir), "hydra.sweep.dir")
        return
    check_output_dir(Path(hydra_cfg.run.dir), "hydra.run.dir")
    if any(o.startswith("hydra.run.dir=") for o in overrides):
        # A directory holding this very run is fine (skip or resume); one holding another run is refused.
        inspect_run_dir(Path(hydra_cfg.run.dir), config_hash(resolved))
