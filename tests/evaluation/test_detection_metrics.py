"""AUROC and AUPR against scikit-learn, and FPR at 95% TPR against hand-counted cases."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from regbench.evaluation.detection_metrics import aupr, auroc, fpr_at_tpr


def labelled(in_scores, out_scores):
    return np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))], np.r_[in_scores, out_scores]


@pytest.mark.parametrize("seed", range(4))
def test_auroc_and_aupr_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    # integer scores: many ties inside and across the two sets
    in_scores, out_scores = rng.integers(0, 20, 300).astype(float), rng.integers(-5, 15, 170).astype(float)
    labels, scores = labelled(in_scores, out_scores)
    assert auroc(in_scores, out_scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert aupr(in_scores, out_scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_auroc_and_aupr_by_hand():
    # in {3, 1}, out {2, 0}: of the 4 (in, out) pairs, 3 are ordered right -> AUROC 3/4.
    # Thresholds 3, 2, 1, 0: precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1 -> AP = 1/2 * 1 + 1/2 * 2/3.
    assert auroc([3.0, 1.0], [2.0, 0.0]) == pytest.approx(0.75)
    assert aupr([3.0, 1.0], [2.0, 0.0]) == pytest.approx(0.5 + 1 / 3)
    assert auroc([1.0], [1.0]) == pytest.approx(0.5)  # a tie counts half


def test_fpr_at_95_tpr_by_hand():
    in_scores = np.arange(20, 40, dtype=float)  # 20 in-distribution: keeping 19 of them (95%) needs threshold 21
    out_scores = np.array([0.0, 20.5, 21.0, 25.0, 50.0])  # 21, 25 and 50 score >= 21: 3 of 5 false positives
    assert fpr_at_tpr(in_scores, out_scores) == pytest.approx(3 / 5)
    assert fpr_at_tpr(in_scores, np.array([0.0, 1.0])) == 0.0
    assert fpr_at_tpr(in_scores, np.array([100.0])) == 1.0
