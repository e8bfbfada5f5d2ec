"""h-calibration (Huang et al., TPAMI 2025) against hand-computed cases: the windowed gaps between predicted and
observed frequency, the error bound (the objective vanishes exactly when every gap is within epsilon), the
ensemble map (one member is temperature scaling; any ensemble keeps the predicted class), and a fit that lowers
the objective and the ECE of overconfident logits."""
from __future__ import annotations

import pytest
import torch

from regbench.calibration import build_calibrators
from regbench.calibration.h_calibration import (HCalibration, cluster_ids, ensemble_probabilities,
                                                error_bounded_objective,
                                                h_calibration_objective, windowed_gaps)
from regbench.calibration.report import probability_metrics
from regbench.errors import UserError
from synthetic_logits import logits_with_temperature

SMALL = dict(num_temperatures=4, window=50, epsilon=0.0, steps=150, lr=0.02)


def test_windowed_gaps_by_hand():
    # Sorted by p: (0.1, y=0), (0.5, y=1), (0.9, y=1): gaps p - y = 0.1, -0.5, -0.1; window 2 = one event either
    # side, zero past the ends, divided by 3.
    gaps, sorted_probs = windowed_gaps(torch.tensor([0.9, 0.1, 0.5], dtype=torch.float64),
                                       torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), window=2)
    assert sorted_probs.tolist() == [0.1, 0.5, 0.9]
    assert gaps.tolist() == pytest.approx([(0.1 - 0.5) / 3, (0.1 - 0.5 - 0.1) / 3, (-0.5 - 0.1) / 3])


def test_objective_vanishes_exactly_when_every_gap_is_within_the_bound():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]],
                         dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 2])
    outcomes = torch.nn.functional.one_hot(labels, 3).double()
    largest_gap = float(windowed_gaps(probs.flatten(), outcomes.flatten(), window=2)[0].abs().max())
    assert largest_gap > 0
    assert float(error_bounded_objective(probs, labels, window=2, epsilon=largest_gap)) == 0.0
    assert float(error_bounded_objective(probs, labels, window=2, epsilon=largest_gap * 0.9)) > 0.0
    # Predicting the outcomes themselves is calibrated: no gap anywhere, nothing to pay even with epsilon = 0.
    assert float(h_calibration_objective(outcomes, labels, window=2, epsilon=0.0)) == 0.0


def test_one_member_ensemble_is_temperature_scaling_and_any_ensemble_keeps_the_predicted_class():
    logits = torch.randn(64, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    one = ensemble_probabilities(logits, torch.tensor([0.4], dtype=torch.float64),
                                 torch.tensor([-2.0], dtype=torch.float64))
    assert torch.allclose(one, (logits * 0.4).softmax(dim=-1))
    mixed = ensemble_probabilities(logits, torch.tensor([0.3, -1.5, 2.0], dtype=torch.float64),
                                   torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64))
    assert torch.allclose(mixed.sum(dim=-1), torch.ones(64, dtype=torch.float64))
    assert torch.equal(mixed.argmax(dim=-1), logits.argmax(dim=-1))


def test_fit_on_overconfident_logits_lowers_the_objective_and_the_test_ece():
    val_logits, val_labels = logits_with_temperature(600, 4, 3.0, seed=3)
    test_logits, test_labels = logits_with_temperature(600, 4, 3.0, seed=4)
    calibrator = HCalibration(seed=0, **SMALL)
    fitted = calibrator.fit(val_logits, val_labels)
    assert fitted["objective"] < 0.5 * fitted["objective_initial"]
    raw_ece = probability_metrics(test_logits.softmax(dim=-1), test_labels)[1]
    calibrated = calibrator.probabilities(test_logits)
    calibrated_ece = probability_metrics(calibrated, test_labels)[1]
    assert calibrated_ece < 0.5 * raw_ece
    assert torch.equal(calibrated.argmax(dim=-1), test_logits.argmax(dim=-1))
    assert HCalibration(seed=0, **SMALL).fit(val_logits, val_labels) == fitted  # deterministic


@pytest.mark.parametrize("key,value,allowed", [
    ("window", 3, "must be an even integer > 0"), ("window", 0, "must be an even integer > 0"),
    ("num_temperatures", 0, "must be an integer > 0"), ("epsilon", -0.1, "must be a number >= 0"),
    ("epsilon", 1.0, "must be < 1"), ("steps", 1.5, "must be an integer > 0"), ("lr", 0, "must be a number > 0"),
])
def test_bad_values_are_refused_naming_the_key(key, value, allowed):
    with pytest.raises(UserError, match=rf"^calibrate\.h_calibration\.{key}={value!r} is invalid: {allowed}"):
        build_calibrators({"h_calibration": {**SMALL, key: value}}, seed=0)


def test_clusters_are_one_dimensional_k_means():
    # Three well separated groups and 3 clusters: each group is one cluster, in ascending order.
    values = torch.tensor([0.01, 0.02, 0.03, 0.5, 0.52, 0.9, 0.95, 0.97], dtype=torch.float64)
    assert cluster_ids(values, clusters=3).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
