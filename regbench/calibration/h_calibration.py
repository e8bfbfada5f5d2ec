"""h-calibration (Huang et al., "h-calibration: Rethinking Classifier Recalibration with Probabilistic
Error-Bounded Objective", TPAMI 2025), as the official code (github.com/WenjianHuang93/h-Calibration,
loss/hCalib.py, models/tsensemble_linear.py) computes it; the paper's method section could not be read in full
here (see the README's Calibration section).

The objective: every (sample, class) pair is one event with predicted probability p and outcome y (1 when the
sample has that class). Sorted by p, each event's window (itself and `window / 2` events either side, zero-padded
at the ends) gives the gap T = sum(p - y) / (window + 1) between predicted and observed frequency; the event's
error is max(|T| - epsilon, 0), zero once the gap is within the bound epsilon. The errors are averaged within 15
clusters of p (1-D k-means), the clusters averaged, and that averaged over the leave-one-class-out subsets (each
class's samples left out in turn).

The calibration map (the official "linear" map): an ensemble of temperature scalings of the log-softmax,
sum_k w_k softmax(a_k log_softmax(z)) with w_k = |v_k| / sum |v|, fitted by full-batch Adam on the validation
split. Each member keeps the logits' order, so the mixture does too: the predicted class never changes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from regbench.specs.calibration import CALIBRATORS

# The official default weighting ("cluaceweighted"): 15 k-means clusters of the event probabilities.
CLUSTERS = 15
KMEANS_ITERATIONS = 10


def windowed_gaps(probs: torch.Tensor, outcomes: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per event, sorted by probability: sum(p - y) over the `window + 1` events centred on it (zeros past the
    ends), divided by window + 1. Returns (gaps, sorted probabilities)."""
    order = probs.argsort(stable=True)
    gaps = (probs - outcomes)[order]
    half = window // 2
    kernel = torch.full((1, 1, window + 1), 1.0 / (window + 1), dtype=gaps.dtype, device=gaps.device)
    return F.conv1d(F.pad(gaps[None, None], (half, half)), kernel).flatten(), probs[order]


def nearest_centre(values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """The index of each value's nearest centre, for ascending centres: the midpoints split the line."""
    return torch.bucketize(values, (centres[1:] + centres[:-1]) / 2)


def cluster_ids(values: torch.Tensor, clusters: int = CLUSTERS) -> torch.Tensor:
    """1-D k-means (Lloyd's, from the quantiles: deterministic) of ascending `values`; each value's cluster. In
    1-D the centres stay in ascending order, so each assignment is a binary search."""
    quantiles = torch.linspace(0, len(values) - 1, clusters, device=values.device).round().long()
    centres = values[quantiles]
    for _ in range(KMEANS_ITERATIONS):
        ids = nearest_centre(values, centres)
        sums = torch.zeros_like(centres).index_add_(0, ids, values)
        counts = torch.zeros_like(centres).index_add_(0, ids, torch.ones_like(values))
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return nearest_centre(values, centres)


def error_bounded_objective(probs: torch.Tensor, labels: torch.Tensor, window: int, epsilon: float) -> torch.Tensor:
    """The error of every event of (N, C) `probs`, averaged per probability cluster, then over the clusters."""
    outcomes = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    gaps, sorted_probs = windowed_gaps(probs.flatten(), outcomes.flatten(), window)
    errors = F.relu(gaps.abs() - epsilon)
    ids = cluster_ids(sorted_probs.detach())
    per_cluster = torch.zeros(CLUSTERS, dtype=errors.dtype, device=errors.device).index_add(0, ids, errors)
    counts = torch.zeros(CLUSTERS, dtype=errors.dtype, device=errors.device).index_add_(0, ids,
                                                                                        torch.ones_like(errors))
    return (per_cluster / counts.clamp_min(1)).mean()


def h_calibration_objective(probs: torch.Tensor, labels: torch.Tensor, window: int,
                            epsilon: float) -> torch.Tensor:
    """The mean of the error-bounded objective over the subsets that leave out each class's samples in turn."""
    subsets = [labels != c for c in range(probs.shape[1])]
    return torch.stack([error_bounded_objective(probs[keep], labels[keep], window, epsilon)
                        for keep in subsets if keep.any()]).mean()


def ensemble_probabilities(logits: torch.Tensor, inverse_temperatures: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """sum_k w_k softmax(|a_k| log_softmax(z)), with w = |v| / sum |v|."""
    log_probs = logits.log_softmax(dim=-1)
    members = (log_probs[..., None] * inverse_temperatures.abs()).softmax(dim=-2)
    return (members * (weights.abs() / weights.abs().sum())).sum(dim=-1)


@CALIBRATORS.register("h_calibration")
class HCalibration:
    name = "h_calibration"

    def __init__(self, *, seed: int, num_temperatures: int, window: int, epsilon: float, steps: int, lr: float):
        self.seed, self.num_temperatures, self.window, self.epsilon = seed, num_temperatures, window, epsilon
        self.steps, self.lr = steps, lr
        self.inverse_temperatures = self.weights = torch.ones(num_temperatures, dtype=torch.float64)

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Adam on the validation split from the official initialization (uniform in +-1/sqrt(K), seeded).
        Returns the objective before and after, and the weighted mean inverse temperature."""
        logits = logits.detach().double()
        generator = torch.Generator().manual_seed(self.seed)
        bound = 1.0 / math.sqrt(self.num_temperatures)
        params = [((torch.rand(self.num_temperatures, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
                  .to(logits.device).requires_grad_() for _ in range(2)]
        optimizer = torch.optim.Adam(params, lr=self.lr)
        objective = lambda: h_calibration_objective(  # noqa: E731
            ensemble_probabilities(logits, *params), labels, self.window, self.epsilon)
        with torch.no_grad():
            initial = float(objective())
        for _ in range(self.steps):
            optimizer.zero_grad()
            objective().backward()
            optimizer.step()
        self.inverse_temperatures, self.weights = (p.detach() for p in params)
        weights = self.weights.abs() / self.weights.abs().sum()
        with torch.no_grad():
            final = float(objective())
        return {"objective_initial": initial, "objective": final,
                "mean_inverse_temperature": float((weights * self.inverse_temperatures.abs()).sum())}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return ensemble_probabilities(logits.double(), self.inverse_temperatures.to(logits.device),
                                      self.weights.to(logits.device))
