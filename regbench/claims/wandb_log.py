"""Log a judged claim to W&B beside its sweep: a run of job_type `claim` in the group the card's jobs share."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from regbench.claims.report import Claim, claim_document
from regbench.loggers import resolve_wandb_mode
from regbench.sweeps.index import sweep_wandb_group

JOB_TYPE = "claim"


def log_claim(claim: Claim, run_config: dict[str, Any], plot: Path) -> str | None:
    """Log the verdict, the per-seed table and the plot when the card's runs logged to W&B; returns the group."""
    logger = run_config["logger"]
    if logger["name"] != "wandb":
        return None
    mode = resolve_wandb_mode(logger["wandb"]["mode"])
    if mode == "disabled":
        return None
    import wandb  # slow to import; only needed here

    plan, v = claim.plan, claim.verdict
    group = sweep_wandb_group(run_config["exp_name"], plan.sweep_dir)
    # A stable id per sweep directory: judging again (after more seeds, say) updates the same W&B run.
    run_id = hashlib.sha1(f"{plan.sweep_dir.resolve()}|{JOB_TYPE}".encode()).hexdigest()[:16]
    document = claim_document(claim)
    run = wandb.init(project=logger["wandb"]["project"], entity=logger["wandb"]["entity"], group=group,
                     job_type=JOB_TYPE, name=f"claim {plan.card.name} ({plan.scale})", id=run_id, resume="allow",
                     mode=mode, dir=str(plan.sweep_dir), reinit="finish_previous",
                     config={key: document[key] for key in ("card", "scale", "paper", "claim", "metric", "arms",
                                                             "shared_overrides", "paper_result")})
    table = wandb.Table(columns=["seed", "baseline", "treatment", "difference"],
                        data=[[seed, b, t, t - b] for seed, b, t in zip(v.seeds, v.baseline, v.treatment)])
    run.log({"claim/per_seed": table, "claim/plot": wandb.Image(str(plot))})
    run.summary.update({"verdict": v.outcome, "effect": v.effect, "ci95_low": v.ci_low, "ci95_high": v.ci_high,
                        "p_value": v.p_value, "mde": v.mde, "n_pairs": len(v.seeds),
                        "baseline_mean": v.baseline_mean, "treatment_mean": v.treatment_mean})
    run.finish()
    return group
