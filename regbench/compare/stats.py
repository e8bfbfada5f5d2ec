"""Pure statistics over seeds: summaries with t-based 95% confidence intervals, and tests against a baseline."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
PAIRED_TEST = "paired t-test"
WELCH_TEST = "Welch t-test"


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None  # sample std (ddof=1); None for a single run
    ci_low: float | None  # None where n < 2: one run gives no interval
    ci_high: float | None


@dataclass(frozen=True)
class Comparison:
    """group minus baseline."""

    diff: float
    ci_low: float | None  # None where the test is undefined (a group with one run, or no spread at all)
    ci_high: float | None
    p_value: float | None
    test: str  # which test gave the CI and p-value, or why there is none
    n: int  # seed pairs for the paired test, runs in both groups otherwise


def scipy_stats():
    """scipy.stats, imported on first use: it takes seconds, and `regbench compare --help` needs none of it."""
    from scipy import stats

    return stats


def summarize(values: list[float]) -> Summary:
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return Summary(len(data), mean, None, None, None)
    std = float(data.std(ddof=1))
    half_width = _t_quantile(len(data) - 1) * std / math.sqrt(len(data))
    return Summary(len(data), mean, std, mean - half_width, mean + half_width)


def compare(group: list[tuple[int, float]], baseline: list[tuple[int, float]]) -> Comparison:
    """Compare (seed, value) samples: paired by seed when both use the same seeds, else Welch.

    Pairing removes the seed-to-seed variation both groups share (same data split and initialisation), so
    it is used whenever at least two seeds occur in both groups, each once; unshared seeds are left out.
    """
    shared = _shared_unique_seeds(group, baseline)
    if len(shared) >= 2:
        by_seed_group, by_seed_base = dict(group), dict(baseline)
        return _paired([by_seed_group[s] for s in shared], [by_seed_base[s] for s in shared])
    return _welch([value for _, value in group], [value for _, value in baseline])


def _paired(group: list[float], baseline: list[float]) -> Comparison:
    diffs = np.asarray(group) - np.asarray(baseline)
    n, diff = len(diffs), float(diffs.mean())
    std = float(diffs.std(ddof=1))
    if std == 0:
        return Comparison(diff, None, None, None, "none (identical differences)", n)
    half_width = _t_quantile(n - 1) * std / math.sqrt(n)
    p_value = float(scipy_stats().ttest_rel(group, baseline).pvalue)
    return Comparison(diff, diff - half_width, diff + half_width, p_value, PAIRED_TEST, n)


def _welch(group: list[float], baseline: list[float]) -> Comparison:
    a, b = np.asarray(group), np.asarray(baseline)
    diff, n = float(a.mean() - b.mean()), len(a) + len(b)
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, None, None, None, "none (a group has 1 run)", n)
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if var_a + var_b == 0:
        return Comparison(diff, None, None, None, "none (no spread)", n)
    # Welch-Satterthwaite degrees of freedom for unequal variances
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half_width = _t_quantile(dof) * math.sqrt(var_a + var_b)
    p_value = float(scipy_stats().ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(diff, diff - half_width, diff + half_width, p_value, WELCH_TEST, n)


def minimal_detectable_effect(differences: list[float], power: float) -> float:
    """The smallest true mean difference that the two-sided paired t-test at 1 - CONFIDENCE detects with
    probability `power`, given these paired differences' spread: (t(1 - alpha/2, n-1) + t(power, n-1)) s / sqrt(n),
    the usual t approximation of the noncentral-t power calculation."""
    data = np.asarray(differences, dtype=float)
    n = len(data)
    return (_t_quantile(n - 1) + float(scipy_stats().t.ppf(power, n - 1))) * float(data.std(ddof=1)) / math.sqrt(n)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out of the family).

    Sorted ascending, the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)): rejecting
    where the adjusted value is below alpha keeps the chance of any false win among the m tests below alpha.
    """
    tested = sorted((p, position) for position, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running_max = 0.0
    for rank, (p_value, position) in enumerate(tested):
        running_max = max(running_max, min(1.0, (len(tested) - rank) * p_value))
        adjusted[position] = running_max
    return adjusted


def _shared_unique_seeds(group: list[tuple[int, float]], baseline: list[tuple[int, float]]) -> list[int]:
    """Seeds present exactly once in each group; a repeated seed makes its pairing ambiguous."""
    counts_group = Counter(seed for seed, _ in group)
    counts_base = Counter(seed for seed, _ in baseline)
    if max(counts_group.values()) > 1 or max(counts_base.values()) > 1:
        return []
    return sorted(set(counts_group) & set(counts_base))


def _t_quantile(dof: float) -> float:
    return float(scipy_stats().t.ppf(0.5 + CONFIDENCE / 2, dof))
