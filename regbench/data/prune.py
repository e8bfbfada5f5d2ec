"""Data Diet pruning (Paul et al., 2021): keep a subset of the training split chosen by per-sample scores.

hard keeps the highest-scoring images (the paper's pruning: the easiest, lowest-scoring ones go), easy the
lowest-scoring ones, random a seeded subset of the same size (the control). Ties go to the earlier position.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from regbench.data.labels import SplitLabels
from regbench.errors import UserError
from regbench.scores_file import kept_count, read_scores


def kept_indices(scores: torch.Tensor, fraction: float, keep: str, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices into `scores` of the images kept when `fraction` of them is pruned."""
    count = kept_count(len(scores), fraction)
    if keep == "random":
        chosen = torch.randperm(len(scores), generator=gen)[:count]
    else:
        order = torch.sort(scores, stable=True, descending=keep == "hard").indices
        chosen = order[:count]
    return chosen.sort().values


def prune_split(labels: SplitLabels, prune: Mapping[str, Any]) -> tuple[SplitLabels, dict[str, Any] | None]:
    """The training split pruned as `prune` (the data config's section) asks, and metrics.json's `prune` section
    (None without a scores file)."""
    path = prune["scores"]
    if path is None:
        return labels, None
    payload = read_scores(path)
    positions = torch.tensor(payload["positions"], dtype=labels.train_idx.dtype)
    if not torch.equal(positions, labels.train_idx):
        raise UserError(f"data.prune.scores={path!r} scores other training images than this run's training split "
                        f"(the dataset's files changed since `regbench score` wrote it); score it again")
    scores = torch.tensor(payload[prune["score"]], dtype=torch.float64)
    kept = kept_indices(scores, prune["fraction"], prune["keep"], torch.Generator().manual_seed(prune["seed"]))
    pruned = dataclasses.replace(labels, train_idx=labels.train_idx[kept], clean_train=labels.clean_train[kept],
                                 given_train=labels.given_train[kept])
    report = {"scores": path, "score": prune["score"], "fraction": float(prune["fraction"]), "keep": prune["keep"],
              "kept": len(kept), "of": len(scores), "score_seeds": payload["seeds"], "score_epochs": payload["epochs"]}
    return pruned, report
