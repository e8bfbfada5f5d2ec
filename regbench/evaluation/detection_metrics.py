"""How well a score separates in-distribution (positive) from out-of-distribution (negative) samples: AUROC,
AUPR with the in-distribution as the positive class, and the false positive rate at 95% true positive rate."""
from __future__ import annotations

import numpy as np

TPR_LEVEL = 0.95


def _labelled(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)])
    positive = np.concatenate([np.ones(len(in_scores), dtype=bool), np.zeros(len(out_scores), dtype=bool)])
    return scores, positive


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """The probability that an in-distribution sample outscores an OOD one, ties counting half (Mann-Whitney U
    from the average ranks)."""
    scores, positive = _labelled(in_scores, out_scores)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average rank (1-based) over each run of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2
    n_in, n_out = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def _descending_counts(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when every sample scoring at least each distinct threshold (highest first) is
    called in-distribution."""
    scores, positive = _labelled(in_scores, out_scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last_of_threshold = np.r_[np.flatnonzero(scores[1:] != scores[:-1]), len(scores) - 1]
    true_pos = np.cumsum(positive)[last_of_threshold]
    false_pos = np.cumsum(~positive)[last_of_threshold]
    return true_pos, false_pos


def aupr(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Average precision with the in-distribution positive: the precision at each threshold weighted by the recall
    it adds (no interpolation)."""
    true_pos, false_pos = _descending_counts(in_scores, out_scores)
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = TPR_LEVEL) -> float:
    """The share of OOD samples called in-distribution at the highest threshold that keeps at least `tpr` of the
    in-distribution samples."""
    true_pos, false_pos = _descending_counts(in_scores, out_scores)
    reached = np.flatnonzero(true_pos >= tpr * true_pos[-1])[0]
    return float(false_pos[reached] / false_pos[-1])


def detection_metrics(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    return {"auroc": auroc(in_scores, out_scores), "aupr": aupr(in_scores, out_scores),
            "fpr95": fpr_at_tpr(in_scores, out_scores)}
