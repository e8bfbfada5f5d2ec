"""`regbench score`: short runs over seeds as one `regbench train -m` sweep in DIR/runs/seed_<s>/ (so relaunching
skips the completed runs and resumes the others, on any launcher), then each run's per-sample EL2N and GraNd
scores on its training split, averaged over the seeds into DIR/scores.json (see scores_file.py).

DIR/score.json records what the directory scores; a relaunch that would score something else is refused.
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regbench.errors import ReportedError, UserError
from regbench.rundir_format import COMPLETED, METRICS_FILE, MetricsKey, read_json, write_json_atomic, write_text_atomic
from regbench.scores_file import FORMAT, SCORES, data_key
from regbench.sweeps.child import run_child_sweep
from regbench.sweeps.seed_overrides import override_key, split_seed_overrides

PLAN_FILE = "score.json"
SCORES_FILE = "scores.json"
RUNS_FOLDER = "runs"
# What `regbench score` sets itself: the seeds (a list of its own), the epochs (--epochs) and the runs' places.
OWNED_KEYS = ("trainer.max_epochs", "hydra.sweep.dir", "hydra.sweep.subdir")


@dataclass(frozen=True)
class ScorePlan:
    directory: Path
    seeds: tuple[int, ...]
    epochs: int
    overrides: tuple[str, ...]  # every run's, after the seed list was taken out

    def train_args(self) -> list[str]:
        return ["-m", f"seed={','.join(map(str, self.seeds))}", f"trainer.max_epochs={self.epochs}", *self.overrides,
                f"hydra.sweep.dir={self.directory / RUNS_FOLDER}", "hydra.sweep.subdir=seed_${seed}"]

    def run_dir(self, seed: int) -> Path:
        return self.directory / RUNS_FOLDER / f"seed_{seed}"

    def record(self) -> dict[str, Any]:
        """What the runs compute (launch-only hydra settings left out) and the seeds."""
        computed = [o for o in self.overrides if not o.lstrip("+~").startswith("hydra")]
        return {"epochs": self.epochs, "overrides": computed, "seeds": list(self.seeds)}


def make_plan(directory: Path, epochs: int, overrides: list[str], default_seeds: tuple[int, ...]) -> ScorePlan:
    if epochs < 1:
        raise UserError(f"--epochs={epochs} is invalid: the runs train at least 1 epoch before they are scored")
    seeds, kept = split_seeds(overrides, default_seeds)
    return ScorePlan(directory, seeds, epochs, tuple(kept))


def split_seeds(overrides: list[str], default_seeds: tuple[int, ...]) -> tuple[tuple[int, ...], list[str]]:
    seeds, others = split_seed_overrides(
        overrides, default_seeds, command="regbench score", owned_keys=OWNED_KEYS,
        owned_note=f"use --epochs; the runs go to DIR/{RUNS_FOLDER}/seed_<s>",
        one_config="every scoring run trains the same config", min_seeds=1, example="seed=0,1,2")
    for override in others:
        if override_key(override).startswith("data.prune"):
            raise UserError(f"{override.input_line!r} is invalid here: regbench score scores the whole training "
                            f"split, so data.prune stays off")
    return seeds, [override.input_line for override in others]


def check_same_scoring(plan: ScorePlan) -> None:
    """The directory scores this config or nothing; the seed list may only grow at its end."""
    path = plan.directory / PLAN_FILE
    if not path.exists():
        return
    previous, record = read_json(path), plan.record()
    if previous is None or previous.get("epochs") != record["epochs"] \
            or previous.get("overrides") != record["overrides"]:
        raise UserError(f"{plan.directory} holds scores of another config ({path}: {previous}); relaunch with the "
                        f"same --epochs and overrides to resume it, or give another DIR")
    if record["seeds"][:len(previous["seeds"])] != previous["seeds"]:
        raise UserError(f"{plan.directory} holds scores with seeds {previous['seeds']}; the seed list may only grow "
                        f"at its end (got {record['seeds']}), or give another DIR")


def check_runs(plan: ScorePlan) -> dict[str, Any]:
    """Every run's config checked as `regbench train` will, before any directory exists; the runs must share one
    training split (the data key), which is returned."""
    from regbench.sweeps.preflight import preflight

    keys = {}
    for job in preflight(plan.train_args()[1:], multirun=True):
        data = job.config["data"]
        if data.get("storage") == "stream":
            raise UserError("data.storage='stream' is invalid here: regbench score scores the training images "
                            "in memory; use data.storage=memory or auto")
        keys[job.config["seed"]] = data_key(data)
    first = keys[plan.seeds[0]]
    for seed, key in keys.items():
        if key != first:
            differing = sorted(k for k in set(key) | set(first) if key.get(k) != first.get(k))
            raise UserError(f"seed={seed} trains on another training split than seed={plan.seeds[0]} (data."
                            f"{', data.'.join(differing)} follow the seed); fix them, e.g. data.noise.seed=0")
    return first


def run_sweep(plan: ScorePlan) -> int:
    print(f"regbench score: {shlex.join(['regbench', 'train', *plan.train_args()])}", flush=True)
    return run_child_sweep([sys.executable, "-m", "regbench", "train", *plan.train_args()],
                           f"the scoring runs in {plan.directory} were interrupted; relaunch the same command to "
                           f"resume them")


def averaged_scores(plan: ScorePlan, data: dict[str, Any]) -> dict[str, Any]:
    """Each completed run scored (once), then the scores averaged over the seeds."""
    import torch

    from regbench.scoring.run_scores import score_run

    missing = [seed for seed in plan.seeds
               if (read_json(plan.run_dir(seed) / METRICS_FILE) or {}).get(MetricsKey.STATUS) != COMPLETED]
    if missing:
        raise ReportedError(f"the runs of seed {', '.join(map(str, missing))} did not complete (see "
                            f"{plan.directory / RUNS_FOLDER}); relaunch the same command to resume them")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = {seed: score_run(plan.run_dir(seed), device) for seed in plan.seeds}
    first = runs[plan.seeds[0]]
    for seed, run in runs.items():
        if run["positions"] != first["positions"] or run["data_hash"] != first["data_hash"]:
            raise ReportedError(f"the run of seed={seed} scored another training split than seed={plan.seeds[0]}")
    mean = {name: torch.tensor([run[name] for run in runs.values()], dtype=torch.float64).mean(dim=0).tolist()
            for name in SCORES}
    return {"format": FORMAT, "data": data, "data_hash": first["data_hash"], "seeds": list(plan.seeds),
            "epochs": plan.epochs, "runs": {str(seed): run["config_hash"] for seed, run in runs.items()},
            "positions": first["positions"], **mean}


def score(plan: ScorePlan) -> Path:
    check_same_scoring(plan)
    data = check_runs(plan)
    plan.directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan.directory / PLAN_FILE, json.dumps(plan.record(), indent=2) + "\n")
    code = run_sweep(plan)
    if code not in (0, 1):
        raise ReportedError(f"regbench train ended with exit code {code} before its runs could complete (see its "
                            f"message above)")
    path = plan.directory / SCORES_FILE
    write_json_atomic(path, averaged_scores(plan, data))
    return path
