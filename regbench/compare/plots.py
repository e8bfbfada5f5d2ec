"""PNG figures of a Report: metric bars, learning curves, reliability diagrams, noisy-label memorization, majority vs
minority subpopulation accuracy.

Figures are drawn on the Agg canvas directly (no pyplot), so no display or global backend state is involved.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from regbench.compare.report import Report, Row
from regbench.compare.runs import RunRecord

CURVE_COLUMNS = ("train_loss", "train_acc", "val_acc", "val_nll")
NOISY_COLUMNS = ("train_acc_clean", "train_acc_noisy")
# The final model's accuracy on the majority and minority subpopulations (coloured datasets' runs).
SUBPOPULATION_METRICS = ("test_majority_acc", "test_minority_acc")
COLORS = [f"C{index}" for index in range(10)]


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    """Write the figures the runs have data for into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _metric_bars(report, out_dir / f"{report.metric}_bars.png"),
        _learning_curves(report, out_dir / "learning_curves.png"),
        _reliability_diagrams(report, out_dir / "reliability.png"),
        _memorization(report, out_dir / "memorization.png"),
        _subpopulations(report, out_dir / "subpopulations.png"),
    ]
    return [path for path in written if path is not None]


def _metric_bars(report: Report, path: Path) -> Path:
    rows = report.rows
    fig = Figure(figsize=(max(6.0, 1.0 * len(rows)), 4.5), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(rows))
    means = np.array([row.summary.mean for row in rows])
    # a group with one run has no interval: draw no error bar rather than a zero-width one
    lower = np.array([np.nan if r.summary.ci_low is None else r.summary.mean - r.summary.ci_low for r in rows])
    upper = np.array([np.nan if r.summary.ci_high is None else r.summary.ci_high - r.summary.mean for r in rows])
    ax.bar(positions, means, yerr=[lower, upper], capsize=4, color=[_color(i) for i in range(len(rows))], alpha=0.7)
    for position, row in zip(positions, rows):
        values = [run.metrics[report.metric] for run in row.runs]
        ax.scatter(np.full(len(values), position), values, color="black", s=12, zorder=3)
    ax.set_xticks(positions, [row.label for row in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(report.metric)
    ax.set_title(f"{report.metric}: mean and 95% CI over seeds (dots: runs)")
    return _save(fig, path)


def _learning_curves(report: Report, path: Path) -> Path | None:
    columns = [c for c in CURVE_COLUMNS if any(_has_values(run, c) for row in report.rows for run in row.runs)]
    if not columns:
        return None
    fig, axes = _grid(len(columns))
    for ax, column in zip(axes, columns):
        for index, row in enumerate(report.rows):
            _plot_band(ax, row.runs, column, _color(index), row.label)
        ax.set_title(column)
        _epoch_axis(ax)
    axes[0].legend(fontsize=7)
    fig.suptitle("learning curves\n(mean and ±1 std over seeds)", fontsize=10)
    return _save(fig, path)


def _reliability_diagrams(report: Report, path: Path) -> Path | None:
    rows = [row for row in report.rows if any(run.calibration is not None for run in row.runs)]
    if not rows:
        return None
    fig, axes = _grid(len(rows))
    for ax, row in zip(axes, rows):
        edges, accuracy, confidence, counts = _pooled_calibration(row)
        filled = counts > 0
        widths = np.diff(edges)
        # the bin of confidence exactly 1.0 has no width: draw it as a thin bar ending at 1
        point = widths == 0
        narrow = np.min(widths[~point]) / 4 if (~point).any() else 0.02
        starts, widths = np.where(point, edges[:-1] - narrow, edges[:-1]), np.where(point, narrow, widths)
        ax.bar(starts[filled], accuracy[filled], width=widths[filled], align="edge",
               edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        ece = float(np.sum(counts[filled] * np.abs(accuracy[filled] - confidence[filled])) / counts.sum())
        ax.set_title(f"{row.label}\nECE {ece:.4f}", fontsize=8)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    fig.suptitle("reliability diagrams\n(test set, bins pooled over seeds)", fontsize=10)
    return _save(fig, path)


def _memorization(report: Report, path: Path) -> Path | None:
    rows = [row for row in report.rows if any(all(_has_values(run, c) for c in NOISY_COLUMNS) for run in row.runs)]
    if not rows:
        return None
    fig, axes = _grid(len(rows))
    for ax, row in zip(axes, rows):
        _plot_band(ax, row.runs, "train_acc_clean", "C2", "clean samples")
        _plot_band(ax, row.runs, "train_acc_noisy", "C3", "noisy samples (fit to the wrong label)")
        ax.set_title(row.label, fontsize=8)
        _epoch_axis(ax)
        ax.set_ylabel("train accuracy w.r.t. given labels")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    fig.suptitle("memorization of noisy labels\n(mean and ±1 std over seeds)", fontsize=10)
    return _save(fig, path)


def _subpopulations(report: Report, path: Path) -> Path | None:
    """One point per run: its minority against its majority accuracy ("Accuracy on the Curve", Liang et al., 2023:
    across models the points follow a curve, not the diagonal, when training has a spurious correlation)."""
    def has_both(run: RunRecord) -> bool:
        return all(np.isfinite(run.metrics.get(name, np.nan)) for name in SUBPOPULATION_METRICS)

    rows = [(index, row) for index, row in enumerate(report.rows) if any(has_both(run) for run in row.runs)]
    if not rows:
        return None
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for index, row in rows:
        points = np.array([[run.metrics[name] for name in SUBPOPULATION_METRICS] for run in row.runs if has_both(run)])
        ax.scatter(points[:, 0], points[:, 1], color=_color(index), label=row.label, s=24, alpha=0.8)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="equal accuracy")
    ax.set_xlabel("majority subpopulation accuracy (test)")
    ax.set_ylabel("minority subpopulation accuracy (test)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("majority vs minority accuracy, one point per run (final model)", fontsize=9)
    return _save(fig, path)


def _plot_band(ax, runs: tuple[RunRecord, ...], column: str, color: str, label: str) -> None:
    epochs, mean, std = _mean_curve(runs, column)
    if len(epochs) == 0:
        return
    ax.plot(epochs, mean, color=color, label=label)
    ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2)


def _mean_curve(runs: tuple[RunRecord, ...], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch, the mean and sample std over the runs that logged `column` then (std 0 with one run)."""
    with_column = [run for run in runs if _has_values(run, column)]
    if not with_column:
        return np.array([]), np.array([]), np.array([])
    epochs = np.unique(np.concatenate([run.history["epoch"] for run in with_column]))
    table = np.full((len(with_column), len(epochs)), np.nan)
    for index, run in enumerate(with_column):
        table[index, np.searchsorted(epochs, run.history["epoch"])] = run.history[column]
    counts = np.sum(~np.isnan(table), axis=0)
    keep = counts > 0
    table, counts, epochs = table[:, keep], counts[keep], epochs[keep]
    mean = np.nansum(table, axis=0) / counts
    squares = np.nansum((table - mean) ** 2, axis=0)
    std = np.where(counts > 1, np.sqrt(squares / np.maximum(counts - 1, 1)), 0.0)
    return epochs, mean, std


def _pooled_calibration(row: Row) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum the bins of all runs of a group: accuracy and confidence become count-weighted means.

    Runs binned differently from the group's first run (another bin count, an older regbench) are left out."""
    calibrations = [run.calibration for run in row.runs if run.calibration is not None]
    calibrations = [c for c in calibrations if np.array_equal(c.bin_edges, calibrations[0].bin_edges)]
    counts = np.sum([c.bin_count for c in calibrations], axis=0)
    weighted_acc = np.sum([np.nan_to_num(c.bin_acc) * c.bin_count for c in calibrations], axis=0)
    weighted_conf = np.sum([np.nan_to_num(c.bin_conf) * c.bin_count for c in calibrations], axis=0)
    safe_counts = np.maximum(counts, 1)
    return calibrations[0].bin_edges, weighted_acc / safe_counts, weighted_conf / safe_counts, counts


def _epoch_axis(ax) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _has_values(run: RunRecord, column: str) -> bool:
    return column in run.history and bool(np.any(np.isfinite(run.history[column])))


def _grid(n_panels: int) -> tuple[Figure, list]:
    n_cols = min(3, n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    fig = Figure(figsize=(4.5 * n_cols, 3.8 * n_rows), layout="constrained")
    axes = list(fig.subplots(n_rows, n_cols, squeeze=False).flat)
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    return fig, axes[:n_panels]


def _color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path
