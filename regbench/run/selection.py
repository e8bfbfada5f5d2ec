"""Model selection over a run's epochs: the epoch a validation metric picks from history.csv's rows."""
from __future__ import annotations

from typing import Any, Sequence


def selected_epoch(rows: Sequence[dict[str, Any]], metric: str) -> int:
    """The first epoch of the highest `metric` (an accuracy), as Lightning's best checkpoint keeps it: a later epoch
    replaces it only when strictly better."""
    return max(range(len(rows)), key=lambda i: rows[i][metric])
