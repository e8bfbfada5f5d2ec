"""A judged claim as claim.json (for scripts and the scoreboard) and CLAIM.md (for people)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regbench.rundir_format import write_text_atomic
from regbench.claims.card import ARMS, Card
from regbench.claims.plan import SweepPlan
from regbench.claims.verdict import CONTRADICTED, NOT_REPRODUCED, POWER, REPRODUCED, Verdict
from regbench.compare.stats import PAIRED_TEST

CLAIM_JSON = "claim.json"
CLAIM_MD = "CLAIM.md"
CLAIM_PLOT = "claim.png"
RULES = ("reproduced: the 95% CI of the paired effect (treatment - baseline, by seed) lies wholly on the claimed "
         "side of 0; contradicted: wholly on the other side; not reproduced: it contains 0.")
MDE_DEFINITION = (f"minimal detectable effect: the true paired effect that a two-sided paired t-test at 5% detects "
                  f"with {POWER:.0%} power given the spread of the per-seed differences, "
                  f"(t(0.975, n-1) + t({POWER}, n-1)) * sd(differences) / sqrt(n)")


@dataclass(frozen=True)
class Claim:
    """Everything the files say about one judged card."""

    plan: SweepPlan
    verdict: Verdict
    wall_time_s: float
    versions: dict[str, Any]

    @property
    def card(self) -> Card:
        return self.plan.card

    @property
    def shows_paper(self) -> bool:
        """The paper's numbers stand beside the measured ones only where the run is the paper's setting."""
        return self.plan.scale == "paper"


def claim_document(claim: Claim) -> dict[str, Any]:
    card, verdict, plan = claim.card, claim.verdict, claim.plan
    values = {"baseline": verdict.baseline, "treatment": verdict.treatment}
    means = {"baseline": verdict.baseline_mean, "treatment": verdict.treatment_mean}
    paper = card.paper_result
    return {
        "card": card.name, "scale": plan.scale, "paper": card.paper, "claim": card.claim,
        "metric": verdict.metric, "lower_is_better": verdict.lower_is_better,
        "verdict": verdict.outcome, "rules": RULES,
        "effect": verdict.effect, "ci95": [verdict.ci_low, verdict.ci_high], "p_value": verdict.p_value,
        "test": PAIRED_TEST, "n_pairs": len(verdict.seeds), "seeds": list(verdict.seeds),
        "mde": verdict.mde, "mde_power": POWER, "mde_definition": MDE_DEFINITION,
        "arms": {arm: {"name": card.arm_names[arm], "overrides": list(card.overrides_of(arm, plan.scale)),
                       **({"from": card.step_arms[arm].describe()} if card.is_procedure else {}),
                       "mean": means[arm], "values": list(values[arm])} for arm in ARMS},
        **({"steps": plan.record()["steps"]} if card.is_procedure else {}),
        "shared_overrides": plan.shared_overrides(),
        "paper_result": {"source": paper.source, "baseline": paper.baseline, "treatment": paper.treatment,
                         "note": paper.note, "shown": claim.shows_paper},
        "sweep_dir": str(plan.sweep_dir), "command": plan.command_line(),
        "wall_time_s": claim.wall_time_s, "versions": claim.versions,
        "judged": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_claim_files(claim: Claim) -> list[Path]:
    """claim.json and CLAIM.md in the sweep directory, each replaced atomically (they derive from the runs)."""
    folder = claim.plan.sweep_dir
    written = [folder / CLAIM_JSON, folder / CLAIM_MD]
    write_text_atomic(written[0], json.dumps(claim_document(claim), indent=2) + "\n")
    write_text_atomic(written[1], claim_markdown(claim))
    return written


def summary_line(claim: Claim) -> str:
    v = claim.verdict
    text = (f"{claim.card.name} ({claim.plan.scale}): {v.outcome} -- {v.metric} "
            f"{claim.card.arm_names['treatment']} - {claim.card.arm_names['baseline']} = {v.effect:+.4f}, "
            f"95% CI [{v.ci_low:+.4f}, {v.ci_high:+.4f}] over {len(v.seeds)} seeds")
    if v.outcome == NOT_REPRODUCED:
        text += f"; smallest effect detectable with {POWER:.0%} power: {v.mde:.4f}"
    return text


def claim_markdown(claim: Claim) -> str:
    card, v, plan = claim.card, claim.verdict, claim.plan
    direction = "lower" if v.lower_is_better else "higher"
    names = card.arm_names
    lines = [
        f"# {card.claim}",
        "",
        f"Card `{card.name}`, scale `{plan.scale}`. Paper: {card.paper}.",
        "",
        f"**Verdict: {v.outcome}.** {_explain(v)}",
        "",
        f"Metric `{v.metric}` ({direction} is better); effect = {names['treatment']} - {names['baseline']}, paired "
        f"by seed over {len(v.seeds)} seeds ({PAIRED_TEST}).",
        "",
        f"| | {names['baseline']} (baseline) | {names['treatment']} (treatment) | effect | 95% CI | p | "
        f"MDE ({POWER:.0%} power) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| measured ({plan.scale}) | {v.baseline_mean:.4f} | {v.treatment_mean:.4f} | {v.effect:+.4f} | "
        f"[{v.ci_low:+.4f}, {v.ci_high:+.4f}] | {_p(v.p_value)} | {v.mde:.4f} |",
    ]
    paper = card.paper_result
    if claim.shows_paper:
        effect = (f"{paper.treatment - paper.baseline:+.4f}" if None not in (paper.baseline, paper.treatment)
                  else "-")
        lines.append(f"| paper ({paper.source}) | {_number(paper.baseline)} | {_number(paper.treatment)} | {effect} "
                     f"| | | |")
    lines += ["", "| seed | baseline | treatment | difference |", "| --- | --- | --- | --- |"]
    lines += [f"| {seed} | {b:.4f} | {t:.4f} | {t - b:+.4f} |" for seed, b, t in zip(v.seeds, v.baseline, v.treatment)]
    lines += ["", *[f"- {arm} ({names[arm]}): {_arm_text(claim, arm)}" for arm in ARMS]]
    if card.is_procedure:
        commands = {step.name: " ".join(["regbench", step.command, *plan.step_args(step)]) for step in card.steps}
        lines += [f"- step `{name}`, for each seed: `{command}`" for name, command in commands.items()]
    else:
        lines.append(f"- both arms: `{' '.join(plan.shared_overrides())}`")
    lines += [
        f"- the paper's result: {paper.source}" + (f" ({paper.note})" if paper.note else "")
        + ("" if claim.shows_paper else " -- shown at `paper` scale only, where the setting is the paper's"),
        f"- {'steps' if card.is_procedure else 'sweep'}: `{plan.command_line()}` (relaunching it, or `regbench "
        f"reproduce` again, resumes it)",
        f"- training time of the runs: {claim.wall_time_s / 60:.1f} min",
        "",
        f"Verdict rules: {RULES} The MDE is the {MDE_DEFINITION}.",
        "",
        f"![paired results]({CLAIM_PLOT})",
        "",
    ]
    return "\n".join(lines)


def _arm_text(claim: Claim, arm: str) -> str:
    """What sets the arm apart: its overrides, or for a procedure card where its value is read."""
    if claim.card.is_procedure:
        return f"`{claim.card.step_arms[arm].describe()}` (in seed_<s>/)"
    return f"`{' '.join(claim.card.overrides_of(arm, claim.plan.scale))}`"


def _explain(v: Verdict) -> str:
    side = "below" if v.lower_is_better else "above"
    if v.outcome == REPRODUCED:
        return f"The 95% CI of the paired effect lies {side} 0, the side the claim predicts."
    if v.outcome == CONTRADICTED:
        return "The 95% CI of the paired effect lies wholly on the other side of 0: the treatment did worse."
    return (f"The 95% CI of the paired effect contains 0. The smallest true effect this run could have detected "
            f"with {POWER:.0%} power is {v.mde:.4f} ({v.metric} units); a smaller one may exist unseen.")


def _p(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:.1e}" if value < 1e-4 else f"{value:.4f}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
