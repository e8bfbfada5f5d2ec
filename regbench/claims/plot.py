"""claim.png: each seed's baseline and treatment joined by a line, and the paired differences with their 95% CI.

Drawn on the Agg canvas directly (no pyplot), like the compare plots.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from regbench.claims.report import CLAIM_PLOT, Claim
from regbench.claims.verdict import CONTRADICTED, REPRODUCED

OUTCOME_COLORS = {REPRODUCED: "tab:green", CONTRADICTED: "tab:red"}
UNDECIDED_COLOR = "tab:gray"


def write_claim_plot(claim: Claim) -> Path:
    v, names = claim.verdict, claim.card.arm_names
    fig = Figure(figsize=(9.0, 4.0), layout="constrained")
    pairs, differences = fig.subplots(1, 2, width_ratios=(1.2, 1.0))

    for b, t in zip(v.baseline, v.treatment):
        pairs.plot([0, 1], [b, t], color="0.6", marker="o", markersize=4, linewidth=1)
    pairs.plot([0, 1], [v.baseline_mean, v.treatment_mean], color="black", marker="s", linewidth=2.5, label="mean")
    pairs.set_xticks([0, 1], [f"{names['baseline']}\n(baseline)", f"{names['treatment']}\n(treatment)"])
    pairs.set_xlim(-0.4, 1.4)
    pairs.set_ylabel(v.metric)
    pairs.set_title(f"{v.metric} per seed ({'lower' if v.lower_is_better else 'higher'} is better)", fontsize=10)
    pairs.legend(fontsize=8)

    color = OUTCOME_COLORS.get(v.outcome, UNDECIDED_COLOR)
    diffs = np.asarray(v.treatment) - np.asarray(v.baseline)
    differences.scatter(np.zeros(len(diffs)), diffs, color="0.4", s=16, zorder=3, label="seeds")
    differences.errorbar([0.25], [v.effect], yerr=[[v.effect - v.ci_low], [v.ci_high - v.effect]], fmt="D",
                         color=color, capsize=6, markersize=7, label="mean, 95% CI")
    differences.axhline(0.0, color="black", linewidth=0.8)
    differences.set_xlim(-0.5, 0.75)
    differences.set_xticks([])
    differences.set_ylabel(f"treatment - baseline ({v.metric})")
    differences.set_title(f"{claim.card.name} ({claim.plan.scale}): {v.outcome}", fontsize=10, color=color)
    differences.legend(fontsize=8)

    path = claim.plan.sweep_dir / CLAIM_PLOT
    temporary = path.with_name(f".{path.name}.tmp")
    FigureCanvasAgg(fig).print_png(str(temporary))
    temporary.replace(path)
    return path
