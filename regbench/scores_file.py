"""The scores file `regbench score` writes and `data.prune.scores` reads (JSON, torch-free so the config checks can
read it): per training position, the EL2N and GraNd scores (and GraNd at initialization) averaged over seeds, with
the data config they belong to.

A scores file fits a run when the run's training split is the one scored: the same `data key` (the data settings
that choose the training images and their labels) and the same number of training images.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

from regbench.errors import check

FORMAT = "regbench-scores/1"
# grand_init: GraNd of a fresh, seeded initialization (the paper's GraNd at initialization).
SCORES = ("el2n", "grand", "grand_init")
KEEP_CHOICES = ("hard", "easy", "random")
# Data settings that change neither which images form the training split nor their labels (crafted_val shifts
# batches and the validation split, as augmentation does).
SPLIT_NEUTRAL_KEYS = ("root", "download", "batch_size", "augment", "balance", "prune", "storage", "max_memory_gb",
                      "num_workers", "cache", "crafted_val")
# Sections that only matter when switched on (their seeds follow the run's seed otherwise).
OPTIONAL_SECTIONS = ("noise", "imbalance")


def data_key(data: Mapping[str, Any]) -> dict[str, Any]:
    """The data settings that choose the training split and its labels."""
    key = {k: v for k, v in data.items() if k not in SPLIT_NEUTRAL_KEYS + OPTIONAL_SECTIONS}
    for section in OPTIONAL_SECTIONS:
        if data[section]["type"] != "none":
            key[section] = dict(data[section])
    return key


def data_key_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(data_key(data), sort_keys=True, default=str).encode()).hexdigest()


def kept_count(total: int, fraction: float) -> int:
    """Training images left when `fraction` of `total` is pruned (the pruned count rounded down)."""
    return total - math.floor(fraction * total)


def read_scores(path: str) -> dict[str, Any]:
    """The scores file at `path`; ParamErrors name `prune.scores` (relative to `data`)."""
    try:
        payload = json.loads(Path(path).expanduser().read_text())
    except FileNotFoundError:
        check(False, "prune.scores", path, "no such file (write one with `regbench score`)")
    except (OSError, ValueError) as err:
        check(False, "prune.scores", path, f"is not a readable scores file ({type(err).__name__})")
    check(isinstance(payload, dict) and payload.get("format") == FORMAT, "prune.scores", path,
          f"is not a scores file written by `regbench score` (format {FORMAT})")
    return payload


def check_scores_fit(payload: Mapping[str, Any], path: str, data: Mapping[str, Any]) -> None:
    """The file scores this data config's training split (same data key), else a ParamError naming both."""
    if payload["data_hash"] != data_key_hash(data):
        ours = data_key(data)
        theirs = payload["data"]
        differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        described = "; ".join(f"data.{k}={theirs.get(k)!r} there, {ours.get(k)!r} here" for k in differing)
        check(False, "prune.scores", path, f"scores another training split ({described})")


def check_training_count(payload: Mapping[str, Any], path: str, train_images: int) -> None:
    count = len(payload["positions"])
    check(count == train_images, "prune.scores", path,
          f"scores {count} training images, but this data config's training split has {train_images}")


def check_prune_config(data: Mapping[str, Any]) -> None:
    """ParamErrors with keys relative to `data`."""
    prune = data["prune"]
    check(prune["score"] in SCORES, "prune.score", prune["score"], f"allowed: {', '.join(SCORES)}")
    check(prune["keep"] in KEEP_CHOICES, "prune.keep", prune["keep"], f"allowed: {', '.join(KEEP_CHOICES)}")
    fraction = prune["fraction"]
    check(isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 <= fraction < 1,
          "prune.fraction", fraction, "must be a fraction in [0, 1) of the training split to remove")
    check(isinstance(prune["seed"], int) and not isinstance(prune["seed"], bool), "prune.seed", prune["seed"],
          "must be an integer")
    path = prune["scores"]
    if path is None:
        return
    check(isinstance(path, str) and path != "", "prune.scores", path,
          "must be null (no pruning) or the path of a scores.json written by `regbench score`")
    check(data["balance"]["type"] != "smote", "prune.scores", path,
          "cannot be combined with data.balance.type=smote (the synthetic samples have no scores)")
    payload = read_scores(path)
    check_scores_fit(payload, path, data)
    check(prune["score"] in payload, "prune.score", prune["score"],
          f"is not in {path} (written before regbench scored it; run the same `regbench score` again)")
