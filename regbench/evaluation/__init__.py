"""Evaluations after training (`eval=[...]`): each selected evaluation is run on the final model and on the
best-validation checkpoint, and returns flat metrics for metrics.json (`<evaluation>....<prefix>_<metric>`, prefix
test or best_test). An evaluation is built from its parameters plus the run's data config, seed and backbone name, and
has `prepare(datamodule)`, called before training (to load what it needs, so a missing file stops the run at its
start), and `evaluate(module, datamodule, prefix) -> dict[str, float]`. Each evaluation's module is imported when a
run first builds it (EVALUATIONS.get)."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.specs.evaluation import EVALUATIONS


def build_evaluations(cfg: Mapping[str, Mapping[str, Any]], data: Mapping[str, Any], seed: int,
                      backbone: str) -> list:
    """The `eval` mapping (name -> params) as evaluations, in list order; bad values are one-line errors."""
    return [EVALUATIONS.create(name, params or {}, path=f"eval.{name}", data=data, seed=seed, backbone=backbone)
            for name, params in cfg.items()]


def run_evaluations(evaluations: list, module, datamodule, prefix: str) -> dict[str, float]:
    """Every evaluation's metrics of the module as it is, under `prefix` (test: the final model, best_test: the
    best-validation checkpoint)."""
    metrics: dict[str, float] = {}
    for evaluation in evaluations:
        metrics.update(evaluation.evaluate(module, datamodule, prefix))
    return metrics
