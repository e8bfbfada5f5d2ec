"""The verdict on a claim from results paired by seed: reproduced, contradicted or not reproduced.

The effect is treatment minus baseline, averaged over the seeds both arms ran (compare.stats' paired t-test).
The claim says the treatment is better; better is lower for metrics named *nll*, *ece*, *loss* (as in
`regbench compare`). reproduced: the 95% CI of the effect lies wholly on the better side of 0; contradicted:
wholly on the worse side; not reproduced: it contains 0, and the run could only have detected (with 80% power)
a true effect of at least the minimal detectable effect.
"""
from __future__ import annotations

from dataclasses import dataclass

from regbench.compare import stats
from regbench.compare.report import lower_is_better
from regbench.errors import ReportedError

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
NOT_REPRODUCED = "not reproduced"
OUTCOMES = (REPRODUCED, CONTRADICTED, NOT_REPRODUCED)
# Power at which the minimal detectable effect is stated.
POWER = 0.80
MIN_PAIRS = 2


@dataclass(frozen=True)
class Verdict:
    outcome: str
    metric: str
    lower_is_better: bool
    seeds: tuple[int, ...]  # the seeds both arms completed, ascending
    baseline: tuple[float, ...]  # the metric per seed, in the order of `seeds`
    treatment: tuple[float, ...]
    effect: float  # mean over seeds of treatment - baseline
    ci_low: float  # 95% CI of the effect (paired t)
    ci_high: float
    p_value: float | None  # two-sided; None when every difference is the same
    mde: float  # minimal detectable effect at POWER, in the metric's units (a size: >= 0)

    @property
    def baseline_mean(self) -> float:
        return sum(self.baseline) / len(self.baseline)

    @property
    def treatment_mean(self) -> float:
        return sum(self.treatment) / len(self.treatment)


def judge(baseline: dict[int, float], treatment: dict[int, float], metric: str) -> Verdict:
    """The verdict from each arm's metric by seed; only seeds both arms have are compared."""
    seeds = tuple(sorted(set(baseline) & set(treatment)))
    if len(seeds) < MIN_PAIRS:
        raise ReportedError(f"cannot judge the claim: {len(seeds)} seed pairs completed, at least {MIN_PAIRS} needed")
    base = tuple(baseline[seed] for seed in seeds)
    treat = tuple(treatment[seed] for seed in seeds)
    comparison = stats.compare(list(zip(seeds, treat)), list(zip(seeds, base)))
    # Identical differences on every seed give a t interval of zero width: the effect itself.
    identical = comparison.ci_low is None
    low, high = (comparison.diff, comparison.diff) if identical else (comparison.ci_low, comparison.ci_high)
    lower = lower_is_better(metric)
    # The claimed side of 0: the treatment is better, i.e. higher, or lower for loss-like metrics.
    gain_low, gain_high = sorted((-high, -low)) if lower else (low, high)
    outcome = REPRODUCED if gain_low > 0 else CONTRADICTED if gain_high < 0 else NOT_REPRODUCED
    differences = [t - b for t, b in zip(treat, base)]
    return Verdict(outcome, metric, lower, seeds, base, treat, comparison.diff, low, high, comparison.p_value,
                   stats.minimal_detectable_effect(differences, POWER))
