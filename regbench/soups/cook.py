"""Cooking soups: every ingredient's network read from its checkpoint into the bare backbone its config builds
(all checked before anything is written), the recipe applied with norm statistics recomputed on the training
data for every soup it evaluates, the soup evaluated on the validation and test splits with regbench's own
metrics, and its run directory written beside the ingredients (format: regbench.rundir_format), so that
`regbench compare` reads it with them. The soup's config.yaml is its first ingredient's with the settings the
ingredients do not share set to null, and a `soup` record (recipe, checkpoint, group, the varied keys)."""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from omegaconf import OmegaConf

from regbench.backbones import build_backbone
from regbench.data.module import build_datamodule
from regbench.data.shape import loaded_run_shape
from regbench.errors import UserError
from regbench.init.weights import backbone_key, network_state, timm_classifier
from regbench.run.module import EvalMetrics
from regbench.run.provenance import provenance
from regbench.rundir_format import (COMPLETED, CONFIG_FILE, HISTORY_COLUMNS, HISTORY_FILE, METRICS_FILE,
                                    MetricsKey, metrics_payload, write_json_atomic, write_text_atomic)
from regbench.soups.batch_stats import check_recomputable, recompute_batch_statistics
from regbench.soups.ingredients import SOUP_KEY, Ingredient
from regbench.soups.recipes import State, greedy_soup, uniform_average

SPLITS = ("val", "test")
# Config keys a soup keeps from its first ingredient even where the ingredients differ: compare reads the seed as
# a replicate, and run_dir is the soup's own.
KEPT_KEYS = ("seed", "run_dir")


def network_of(ingredient: Ingredient, target: dict[str, torch.Tensor], classifier: str | None) -> State:
    """The ingredient's network under the bare backbone's keys (a head wrapper's keys mapped back); a key or shape
    the backbone lacks is one line: the runs differ in architecture."""
    where = f"run {str(ingredient.run_dir)!r}"
    try:
        raw = torch.load(ingredient.checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001  (damaged bytes can fail in any way; each means "unreadable")
        raise UserError(f"{where}: {ingredient.checkpoint} is unreadable ({type(err).__name__})") from None
    state: State = {}
    for key, tensor in network_state(raw, str(ingredient.checkpoint)).items():
        placed = backbone_key(key, target, classifier)
        if placed is None or tuple(tensor.shape) != tuple(target[placed].shape):
            shape = "" if placed is None else f" with shape {tuple(tensor.shape)}, not {tuple(target[placed].shape)}"
            raise UserError(f"{where} differs in architecture from the first ingredient: its network's {key}"
                            f"{shape} does not fit; a soup averages networks of one architecture")
        state[placed] = tensor.float() if tensor.is_floating_point() else tensor
    missing = [key for key in target if key not in state]
    if missing:
        raise UserError(f"{where} differs in architecture from the first ingredient: its network lacks "
                        f"{missing[0]}; a soup averages networks of one architecture")
    return state


@dataclass
class Kitchen:
    """What one soup is cooked with: the first ingredient's data and bare backbone, every ingredient's state."""

    ingredients: list[Ingredient]
    datamodule: Any
    model: nn.Module
    states: list[State]
    device: torch.device

    def batches(self, split: str):
        if split == "train":
            return self.datamodule.unaugmented_train_batches()
        return self.datamodule.unsharded_batches(split)

    def on_device(self, split: str):
        return ((images.to(self.device), labels.to(self.device)) for images, labels, *_ in self.batches(split))

    def load(self, positions: list[int]) -> int:
        """The uniform soup of the ingredients at `positions` into the model, its norm statistics recomputed."""
        self.model.load_state_dict(uniform_average([self.states[i] for i in positions]))
        return recompute_batch_statistics(self.model, self.on_device("train"))

    @torch.no_grad()
    def evaluate(self, split: str) -> tuple[dict[str, float], dict[str, list[float]]]:
        self.model.eval()
        metrics = EvalMetrics(self.datamodule.num_classes).to(self.device)
        for images, labels in self.on_device(split):
            metrics.update(self.model(images), labels)
        values = {f"{split}_{name}": float(getattr(metrics, name).compute()) for name in ("acc", "nll", "ece")}
        return values, metrics.bins.compute()


def prepare(ingredients: list[Ingredient]) -> Kitchen:
    """Build the first ingredient's data and backbone and read every ingredient into it (refusals included)."""
    cfg = ingredients[0].config
    datamodule = build_datamodule(cfg["data"], cfg["seed"])
    datamodule.setup()
    shape = loaded_run_shape(datamodule, cfg["trainer"]["max_epochs"], 1)
    model = build_backbone(cfg["backbone"], cfg["norm"], datamodule.image_shape, datamodule.num_classes, shape)
    check_recomputable(model, cfg["norm"]["name"])
    target, classifier = model.state_dict(), timm_classifier(model)
    states = [network_of(ingredient, target, classifier) for ingredient in ingredients]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Kitchen(ingredients, datamodule, model.to(device), states, device)


def cook(kitchen: Kitchen, recipe: str) -> dict[str, Any]:
    """The soup (left loaded in the kitchen's model) and metrics.json's `soup` section."""
    val_acc: dict[tuple[int, ...], float] = {}

    def soup_val_acc(positions: list[int]) -> float:
        key = tuple(sorted(positions))
        if key not in val_acc:
            kitchen.load(list(key))
            val_acc[key] = kitchen.evaluate("val")[0]["val_acc"]
        return val_acc[key]

    singles = [soup_val_acc([i]) for i in range(len(kitchen.states))]
    if recipe == "greedy":
        chosen, steps = greedy_soup(singles, soup_val_acc)
    else:
        chosen, steps = list(range(len(kitchen.states))), []
    recomputed = kitchen.load(chosen)
    runs = [str(ingredient.run_dir) for ingredient in kitchen.ingredients]
    best = max(range(len(singles)), key=lambda i: singles[i])
    return {
        "recipe": recipe, "checkpoint": kitchen.ingredients[0].checkpoint.name,
        "norms_recomputed": recomputed,
        "ingredients": [{"run_dir": run, "checkpoint": str(ingredient.checkpoint), "val_acc": acc,
                         "recorded_test_acc": ingredient.metrics.get(MetricsKey.METRICS, {}).get("test_acc")}
                        for run, ingredient, acc in zip(runs, kitchen.ingredients, singles)],
        "chosen": [runs[i] for i in chosen],
        "greedy_steps": [{"run_dir": runs[step.candidate], "soup_val_acc": step.val_acc, "kept": step.kept}
                         for step in steps],
        # The paper's baseline: the ingredient best on validation, with its own test accuracy.
        "best_ingredient": {"run_dir": runs[best], "val_acc": singles[best],
                            "test_acc": kitchen.ingredients[best].metrics.get(MetricsKey.METRICS, {}).get("test_acc")},
    }


def shared_config(configs: list[dict[str, Any]], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """The first config with every setting the configs do not share set to null (a soup of lr 0.01 and 0.003
    has no single learning rate), and those settings' dotted keys."""
    shared: dict[str, Any] = {}
    varied: list[str] = []
    for key, value in configs[0].items():
        others = [config.get(key) for config in configs[1:]]
        if isinstance(value, dict) and all(isinstance(other, dict) for other in others):
            shared[key], inner = shared_config([value, *others], f"{prefix}{key}.")
            varied += inner
        elif all(other == value for other in others) or (not prefix and key in KEPT_KEYS):
            shared[key] = value
        else:
            shared[key] = None
            varied.append(f"{prefix}{key}")
    return shared, varied


def history_header() -> str:
    """history.csv's columns without rows: a soup trains no epoch."""
    text = io.StringIO()
    csv.writer(text).writerow(HISTORY_COLUMNS)
    return text.getvalue()


def write_soup(kitchen: Kitchen, soup: dict[str, Any], out: Path, group: str, started: float) -> dict[str, Any]:
    """Evaluate the cooked soup and write its run directory; returns its metrics.json payload."""
    (val, _), (test, bins) = (kitchen.evaluate(split) for split in SPLITS)
    first = kitchen.ingredients[0]
    shared, varied = shared_config([ingredient.config for ingredient in kitchen.ingredients])
    config = {**shared, "run_dir": str(out),
              SOUP_KEY: {"recipe": soup["recipe"], "checkpoint": soup["checkpoint"], "group": group or None,
                         "varied": varied}}
    payload = metrics_payload(config, COMPLETED, wall_time_s=time.perf_counter() - started, attempts=[],
                              provenance=provenance(),
                              **{MetricsKey.METRICS: {**test, **val}, MetricsKey.CALIBRATION: bins,
                                 MetricsKey.EPOCHS: 0, MetricsKey.CLASSES: first.metrics.get(MetricsKey.CLASSES),
                                 MetricsKey.INIT: first.metrics[MetricsKey.INIT],
                                 SOUP_KEY: {**soup, "group": group or None}})
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / CONFIG_FILE, OmegaConf.to_yaml(config))
    write_text_atomic(out / HISTORY_FILE, history_header())
    write_json_atomic(out / METRICS_FILE, payload)
    return payload
