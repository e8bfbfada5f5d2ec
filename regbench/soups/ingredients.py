"""The ingredients of a soup, checked without torch: completed runs below the given paths, each with the
checkpoint to average, all fine-tuned from the same source with the same architecture and data; grouped by a
config key when asked; and the soup's output directory, which never overwrites a completed one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # a dependency of omegaconf; config.yaml is plain YAML written by OmegaConf

from regbench.errors import UserError
from regbench.rundir_format import COMPLETED, CONFIG_FILE, METRICS_FILE, RESULT_FILES, MetricsKey, read_json
from regbench.init.source import selected_checkpoint

SOUP_KEY = "soup"  # config.yaml's record and metrics.json's section of a soup run directory
# Config keys that must be equal across ingredients: the averaged tensors must mean the same thing (architecture)
# and the soup is judged on one validation and test split (data).
# Regularizers whose run is evaluated with a weight average kept outside the network (its checkpoint's `model.`
# tensors are the raw weights): souping those would not soup what the run reported.
AVERAGING_REGULARIZERS = ("ema", "swa")
SHARED_KEYS = ("backbone", "norm", "data.name", "data.val_fraction", "data.test_fraction",
               "data.split_seed")


@dataclass(frozen=True)
class Ingredient:
    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]  # the run's metrics.json
    checkpoint: Path

    @property
    def init_source(self) -> tuple[str, str | None]:
        """The source it was fine-tuned from: the weights file and the source run's config hash."""
        source = self.metrics[MetricsKey.INIT]["sources"][0]
        return source["path"], source["source_config_hash"]


def config_value(config: dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def run_dirs_below(paths: list[str]) -> list[Path]:
    """The run directories (holding metrics.json) at or below `paths`, soups left out: a soup is not an
    ingredient of the next one."""
    found: set[Path] = set()
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise UserError(f"path {given!r} is not a directory: give sweep or run directories")
        for metrics in path.rglob(METRICS_FILE):
            if "wandb" in metrics.relative_to(path).parts:
                continue
            payload = read_json(metrics) or {}
            if SOUP_KEY not in payload:
                found.add(metrics.parent.resolve())
    return sorted(found)


def load_ingredient(run_dir: Path, checkpoint: str) -> Ingredient:
    metrics = read_json(run_dir / METRICS_FILE)
    if metrics is None or metrics.get(MetricsKey.STATUS) != COMPLETED:
        status = "unreadable" if metrics is None else metrics.get(MetricsKey.STATUS)
        raise UserError(f"run {str(run_dir)!r} is not completed (metrics.json status: {status}); soups take "
                        f"completed runs only")
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"run {str(run_dir)!r} has no readable {CONFIG_FILE}: {err}") from None
    averaging = [name for name in config.get("regularizer") or {} if name in AVERAGING_REGULARIZERS]
    if averaging:
        raise UserError(f"run {str(run_dir)!r} used regularizer {averaging[0]}, whose evaluated weights are an "
                        f"average kept beside the network; soups take runs without "
                        f"{' or '.join(AVERAGING_REGULARIZERS)}")
    sources = (metrics.get(MetricsKey.INIT) or {}).get("sources") or []
    if len(sources) != 1:
        raise UserError(f"run {str(run_dir)!r} was not fine-tuned from one checkpoint (no init.from in its "
                        f"metrics.json); soups average runs fine-tuned from the same initialisation")
    path, missing = selected_checkpoint(run_dir, checkpoint)
    if missing:
        raise UserError(f"run {str(run_dir)!r} {missing}")
    return Ingredient(run_dir, config, metrics, path)


def find_ingredients(paths: list[str], checkpoint: str) -> list[Ingredient]:
    return [load_ingredient(run_dir, checkpoint) for run_dir in run_dirs_below(paths)]


def check_shared(ingredients: list[Ingredient], label: str = "") -> None:
    """One soup's ingredients: at least two, one initialisation, one architecture and data split."""
    where = f"{label}: " if label else ""
    if len(ingredients) < 2:
        raise UserError(f"{where}a soup needs at least 2 completed fine-tuned runs, found {len(ingredients)}")
    first = ingredients[0]
    for other in ingredients[1:]:
        if other.init_source != first.init_source:
            raise UserError(f"{where}runs {str(first.run_dir)!r} and {str(other.run_dir)!r} do not share their "
                            f"initialisation (init source {first.init_source[0]!r} with config hash "
                            f"{first.init_source[1]} vs {other.init_source[0]!r} with {other.init_source[1]}); a "
                            f"soup averages runs fine-tuned from one checkpoint")
        for key in SHARED_KEYS:
            mine, theirs = config_value(first.config, key), config_value(other.config, key)
            if mine != theirs:
                raise UserError(f"{where}runs {str(first.run_dir)!r} and {str(other.run_dir)!r} differ in {key} "
                                f"({mine!r} vs {theirs!r}); a soup averages one architecture on one data split")
        classes = (len(first.metrics.get(MetricsKey.CLASSES) or []), len(other.metrics.get(MetricsKey.CLASSES) or []))
        if classes[0] != classes[1]:
            raise UserError(f"{where}runs {str(first.run_dir)!r} and {str(other.run_dir)!r} differ in their number "
                            f"of classes ({classes[0]} vs {classes[1]})")


def group_by(ingredients: list[Ingredient], key: str | None) -> dict[str, list[Ingredient]]:
    """One soup per value of config key `key` (named KEY=VALUE), or one soup of all ingredients ("")."""
    if key is None:
        return {"": ingredients}
    groups: dict[str, list[Ingredient]] = {}
    for ingredient in ingredients:
        value = config_value(ingredient.config, key)
        if value is None:
            raise UserError(f"--by {key!r} is invalid: run {str(ingredient.run_dir)!r} has no such config key "
                            f"(give a dotted key of config.yaml, e.g. optim.lr)")
        groups.setdefault(f"{key}={value}", []).append(ingredient)
    return groups


def check_out_dir(out: Path) -> None:
    """A soup is written only into a directory that holds no run and no completed soup: nothing is overwritten
    (a soup attempt that did not complete may be replaced)."""
    taken = [name for name in RESULT_FILES if (out / name).exists()]
    if not taken:
        return
    metrics = read_json(out / METRICS_FILE) or {}
    if SOUP_KEY not in metrics or metrics.get(MetricsKey.STATUS) == COMPLETED:
        what = "a completed soup" if SOUP_KEY in metrics else f"a run ({taken[0]} exists)"
        raise UserError(f"--out {str(out)!r} already holds {what}; choose a new directory so no result is "
                        f"overwritten")
