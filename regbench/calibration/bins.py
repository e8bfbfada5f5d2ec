"""Reliability-diagram bins as a torchmetrics Metric, so they sum correctly across DDP ranks."""
from __future__ import annotations

import torch
from torchmetrics import Metric

# Confidence bins of every ECE and reliability diagram regbench reports (raw and calibrated).
ECE_BINS = 15


class ReliabilityBins(Metric):
    """Per confidence bin: sample count, summed confidence and number correct (Guo et al., 2017).

    Binned exactly as torchmetrics' calibration error: `n_bins` left-closed bins [b/n, (b+1)/n), plus one more
    bin for confidences of exactly 1.0 (a saturated float32 softmax), so the ECE recomputed from these bins is
    torchmetrics' ECE. The edges list ends with 1.0 twice: the last bin is the single point 1.0.
    """

    full_state_update = False

    def __init__(self, n_bins: int = 15):
        super().__init__()
        self.n_bins = n_bins
        for state in ("count", "confidence", "correct"):
            self.add_state(state, default=torch.zeros(n_bins + 1, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        confidence, predicted = probs.max(dim=-1)
        # torchmetrics' _binning_bucketize: the same boundaries in the same dtype, the same rule.
        boundaries = torch.linspace(0, 1, self.n_bins + 1, dtype=confidence.dtype, device=confidence.device)
        bins = torch.bucketize(confidence, boundaries, right=True) - 1
        ones = torch.ones_like(confidence, dtype=torch.float64)
        self.count.index_add_(0, bins, ones)
        self.confidence.index_add_(0, bins, confidence.double())
        self.correct.index_add_(0, bins, (predicted == labels).double())

    def compute(self) -> dict[str, list[float]]:
        safe = self.count.clamp_min(1)
        return {
            "bin_edges": [round(b / self.n_bins, 6) for b in range(self.n_bins + 1)] + [1.0],
            "bin_acc": (self.correct / safe).tolist(),
            "bin_conf": (self.confidence / safe).tolist(),
            "bin_count": self.count.tolist(),
        }


def expected_calibration_error(bins: dict[str, list[float]]) -> float:
    """ECE = sum_b (n_b / N) |acc_b - conf_b|."""
    count = torch.tensor(bins["bin_count"])
    gap = (torch.tensor(bins["bin_acc"]) - torch.tensor(bins["bin_conf"])).abs()
    return float((count / count.sum().clamp_min(1) * gap).sum())
