"""Turn runs into the ranked comparison table: one row per group, with its statistics against its baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from regbench.compare import stats
from regbench.compare.grouping import Group, default_baseline, find_baselines, group_runs
from regbench.compare.runs import RunRecord
from regbench.errors import UserError
from regbench.rundir_format import LOWER_IS_BETTER_MARKERS

DEFAULT_METRIC = "test_acc"  # what a comparison ranks by unless told otherwise


@dataclass(frozen=True)
class Row:
    rank: int
    label: str
    values: tuple  # one per grouping key
    runs: tuple[RunRecord, ...]  # the runs that have the metric
    summary: stats.Summary
    baseline_label: str | None  # None where the group has no baseline to compare with
    comparison: stats.Comparison | None  # None for the baseline itself and for groups without one
    p_holm: float | None = None  # the comparison's p-value, Holm-adjusted over every test of the report

    @property
    def seeds(self) -> list[int]:
        return sorted(run.seed for run in self.runs)

    @property
    def is_baseline(self) -> bool:
        return self.baseline_label == self.label


@dataclass(frozen=True)
class Report:
    metric: str
    lower_is_better: bool
    keys: list[str]
    baseline: dict[str, str] | None  # the baseline spec, None when nothing is compared
    rows: list[Row]  # best first
    runs_without_metric: list[str]  # sources of runs left out because they lack a finite value of the metric

    @property
    def tests(self) -> int:
        """How many comparisons have a p-value: the family the Holm adjustment is taken over."""
        return sum(row.p_holm is not None for row in self.rows)


def lower_is_better(metric: str) -> bool:
    return any(marker in metric for marker in LOWER_IS_BETTER_MARKERS)


def available_metrics(records: list[RunRecord]) -> list[str]:
    return sorted({name for record in records for name in record.metrics})


def build_report(records: list[RunRecord], metric: str, keys: list[str], baseline: dict[str, str] | None) -> Report:
    """Group `records` by `keys`, summarize `metric` per group, compare with the baseline, rank best first.

    `baseline` None means the default: the groups with regularizer none, if any.
    """
    metrics = available_metrics(records)
    if metric not in metrics:
        raise UserError(f"--metric {metric!r} is not a metric of the runs; available: {', '.join(metrics)}")

    def has_metric(record: RunRecord) -> bool:
        return math.isfinite(record.metrics.get(metric, math.nan))

    with_metric = [record for record in records if has_metric(record)]
    without_metric = [record.source for record in records if not has_metric(record)]
    if not with_metric:
        raise UserError(f"--metric {metric!r} has no finite value in any run; available: {', '.join(metrics)}")

    groups = group_runs(with_metric, keys)
    spec = baseline if baseline is not None else default_baseline(groups, keys)
    baselines = find_baselines(groups, keys, spec) if spec is not None else {}

    def samples(group: Group) -> list[tuple[int, float]]:
        return [(run.seed, run.metrics[metric]) for run in group.runs]

    rows = []
    for group in groups:
        base = baselines.get(group.values)
        comparison = None if base is None or base is group else stats.compare(samples(group), samples(base))
        rows.append(Row(
            rank=0,
            label=group.label(keys),
            values=group.values,
            runs=group.runs,
            summary=stats.summarize([value for _, value in samples(group)]),
            baseline_label=None if base is None else base.label(keys),
            comparison=comparison,
        ))
    lower = lower_is_better(metric)
    rows.sort(key=lambda row: (row.summary.mean if lower else -row.summary.mean, row.label))
    # One family for the whole table (every group against its baseline), so many tests cannot hand out false wins.
    adjusted = stats.holm([row.comparison.p_value if row.comparison else None for row in rows])
    ranked = [replace(row, rank=position, p_holm=p_holm)
              for position, (row, p_holm) in enumerate(zip(rows, adjusted), start=1)]
    return Report(metric, lower, keys, spec, ranked, without_metric)
