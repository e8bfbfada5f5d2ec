"""The calibrated test metrics of one model: each calibrator fitted on its validation logits, applied to its test
logits. metrics.json gets `calibrated.<method>.<prefix>_nll` / `_ece` among its metrics (so `regbench compare` and
W&B's summary see them, lower is better) and, under `calibrated`, each method's fitted parameters and reliability
bins per model (`test`: the final model, `best_test`: the best-validation checkpoint)."""
from __future__ import annotations

from typing import Any

import torch

from regbench.calibration.bins import ECE_BINS, ReliabilityBins, expected_calibration_error

CALIBRATED_KEY = "calibrated"


def calibrated_metric(method: str, prefix: str, metric: str) -> str:
    """e.g. calibrated.temperature.test_nll"""
    return f"{CALIBRATED_KEY}.{method}.{prefix}_{metric}"


def probability_metrics(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, dict[str, list[float]]]:
    """NLL, ECE and reliability bins of (N, C) probabilities, binned as the raw test metrics are (on the CPU)."""
    probs, labels = probs.cpu(), labels.cpu()
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    nll = float(-picked.clamp_min(torch.finfo(probs.dtype).tiny).log().mean())
    bins = ReliabilityBins(ECE_BINS)
    bins.update(probs, labels)
    reliability = bins.compute()
    return nll, expected_calibration_error(reliability), reliability


def calibrated_report(calibrators: list, val: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor], prefix: str) -> tuple[dict[str, float], dict]:
    """(metrics, sections): the flat calibrated metrics, and per method {prefix: {fitted, reliability}}."""
    metrics: dict[str, float] = {}
    sections: dict[str, dict[str, Any]] = {}
    for calibrator in calibrators:
        fitted = calibrator.fit(*val)
        nll, ece, reliability = probability_metrics(calibrator.probabilities(test[0]), test[1])
        metrics[calibrated_metric(calibrator.name, prefix, "nll")] = nll
        metrics[calibrated_metric(calibrator.name, prefix, "ece")] = ece
        sections[calibrator.name] = {prefix: {"fitted": fitted, "reliability": reliability}}
    return metrics, sections
