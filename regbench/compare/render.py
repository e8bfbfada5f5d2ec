"""Write a Report as a rich terminal table, or as markdown, CSV or JSON for papers and scripts."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from rich.console import Console
from rich.table import Table

from regbench.compare.grouping import format_value
from regbench.compare.report import Report, Row

FORMATS = ("table", "markdown", "csv", "json")


def write_report(report: Report, fmt: str, stream: TextIO) -> None:
    writers = {"table": _write_table, "markdown": _write_markdown, "csv": _write_csv, "json": _write_json}
    writers[fmt](report, stream)


def _write_table(report: Report, stream: TextIO) -> None:
    header, rows = _display_cells(report)
    table = Table(title=_title(report), caption=_caption(report))
    text_columns = {*_key_columns(report), "test"}
    for name in header:
        table.add_column(name, justify="left" if name in text_columns else "right")
    for row in rows:
        table.add_row(*row)
    # outside a terminal (a pipe, a file) the table keeps its natural width instead of wrapping at 80 columns
    Console(file=stream, width=None if stream.isatty() else 250).print(table)


def _write_markdown(report: Report, stream: TextIO) -> None:
    header, rows = _display_cells(report)
    lines = [f"**{_title(report)}**", ""]
    for cells in [header, ["---"] * len(header), *rows]:
        lines.append("| " + " | ".join(_escape(cell) for cell in cells) + " |")
    caption = _caption(report)
    if caption:
        lines += ["", caption]
    stream.write("\n".join(lines) + "\n")


def report_cells(report: Report) -> tuple[list[str], list[list]]:
    """The report's columns and rows as plain values, None where a cell is empty: the CSV's content, and the
    table that W&B shows."""
    columns = ["rank", *_key_columns(report), "n", "seeds", "mean", "std", "ci95_low", "ci95_high"]
    if report.baseline is not None:
        columns += ["baseline", "diff", "diff_ci95_low", "diff_ci95_high", "p_value", "p_holm", "test"]
    rows = []
    for row in report.rows:
        cells = [row.rank, *_key_values(report, row), row.summary.n, " ".join(map(str, row.seeds)),
                 row.summary.mean, row.summary.std, row.summary.ci_low, row.summary.ci_high]
        if report.baseline is not None:
            c = row.comparison
            cells += [row.baseline_label] + ([c.diff, c.ci_low, c.ci_high, c.p_value, row.p_holm, c.test] if c
                                             else [None] * 6)
        rows.append(cells)
    return columns, rows


def _write_csv(report: Report, stream: TextIO) -> None:
    writer = csv.writer(stream)
    columns, rows = report_cells(report)
    writer.writerow(columns)
    for cells in rows:
        writer.writerow(["" if cell is None else cell for cell in cells])


def _write_json(report: Report, stream: TextIO) -> None:
    groups = []
    for row in report.rows:
        s = row.summary
        group = {
            "rank": row.rank, "label": row.label, "settings": dict(zip(report.keys, row.values)),
            "n": s.n, "seeds": row.seeds, "mean": s.mean, "std": s.std,
            "ci95": None if s.ci_low is None else [s.ci_low, s.ci_high],
        }
        if report.baseline is not None:
            c = row.comparison
            group["baseline"] = row.baseline_label
            group["vs_baseline"] = None if c is None else {
                "diff": c.diff, "ci95": None if c.ci_low is None else [c.ci_low, c.ci_high],
                "p_value": c.p_value, "p_holm": row.p_holm, "test": c.test, "n": c.n,
            }
        groups.append(group)
    document = {
        "metric": report.metric, "lower_is_better": report.lower_is_better, "group_keys": report.keys,
        "baseline": report.baseline, "holm_family_size": report.tests, "groups": groups,
    }
    json.dump(document, stream, indent=2)
    stream.write("\n")


def _display_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of formatted text, shared by the terminal table and markdown."""
    header = ["rank", *_key_columns(report), "n", "mean", "std", "95% CI"]
    if report.baseline is not None:
        header += ["Δ vs baseline", "Δ 95% CI", "p", "p_holm", "test"]
    rows = []
    for row in report.rows:
        s = row.summary
        cells = [str(row.rank), *map(format_value, _key_values(report, row)), str(s.n), _number(s.mean),
                 _number(s.std), "n/a (n=1)" if s.n < 2 else _interval(s.ci_low, s.ci_high)]
        if report.baseline is not None:
            cells += _comparison_cells(row)
        rows.append(cells)
    return header, rows


def _comparison_cells(row: Row) -> list[str]:
    if row.is_baseline:
        return ["baseline", "", "", "", ""]
    c = row.comparison
    if c is None:
        return ["no baseline", "", "", "", ""]
    interval = _interval(c.ci_low, c.ci_high, signed=True)
    return [f"{c.diff:+.4f}", interval, _p_value(c.p_value), _p_value(row.p_holm), c.test]


def _p_value(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.1e}" if value < 1e-4 else f"{value:.4f}")


def _key_columns(report: Report) -> list[str]:
    return report.keys or ["group"]


def _key_values(report: Report, row: Row) -> list:
    return list(row.values) if report.keys else [row.label]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _interval(low: float | None, high: float | None, signed: bool = False) -> str:
    if low is None:
        return "n/a"
    spec = "+.4f" if signed else ".4f"
    return f"[{low:{spec}}, {high:{spec}}]"


def _title(report: Report) -> str:
    direction = "lower" if report.lower_is_better else "higher"
    return f"{report.metric} over seeds ({direction} is better)"


def _caption(report: Report) -> str:
    if report.baseline is None:
        return "95% CIs: t distribution over seeds."
    spec = ",".join(f"{key}={value}" for key, value in report.baseline.items())
    others = " with the same other settings" if len(report.baseline) < len(report.keys) else ""
    return (f"Δ = group − baseline ({spec}{others}); 95% CIs and p-values from the named test. p: the raw p-value "
            f"of each test; p_holm: Holm-adjusted over the {report.tests} tests of this table (a difference is "
            f"significant at the 5% family-wise level when p_holm < 0.05).")


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")
