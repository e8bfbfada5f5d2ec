"""metrics.json's `groups` section on the coloured datasets: the tested model's accuracy per (label, colour) group,
on the majority and minority subpopulations, and on the worst group ("Accuracy on the Curve", Liang et al., 2023)."""
from __future__ import annotations

from typing import Any

from regbench.data.subpopulations import COLOR_NAMES, group_accuracy

GROUP_SCALARS = ("majority_acc", "minority_acc", "worst_group_acc")


def group_metrics(module, datamodule, prefix: str) -> tuple[dict[str, float], dict[str, Any] | None]:
    """(the scalars `<prefix>_majority_acc`, `_minority_acc`, `_worst_group_acc`, the full group report) of the
    module's current weights on the test split; ({}, None) for a dataset without groups. An empty subpopulation
    (test_correlation 0 or 1) has no scalar."""
    if datamodule.spurious_groups is None:
        return {}, None
    labels, colors = datamodule.spurious_groups["test"]
    logits, _ = module.split_logits(datamodule.unsharded_batches("test"))
    report = group_accuracy(logits.argmax(dim=-1), labels, colors, datamodule.num_classes)
    scalars = {f"{prefix}_{key}": report[key] for key in GROUP_SCALARS if report[key] is not None}
    return scalars, report


def groups_section(num_classes: int, final: dict[str, Any] | None, best: dict[str, Any] | None) -> dict[str, Any]:
    """{"groups": ...} for metrics.json (nothing without groups): colour c is class c's majority colour."""
    if final is None:
        return {}
    return {"groups": {"colors": list(COLOR_NAMES[:num_classes]), "final": final,
                       **({"best": best} if best is not None else {})}}
