"""Temperature scaling (Guo et al., 2017) against hand checks: it recovers a known temperature, minimizes the NLL
of its fit set (the first-order condition holds, and no temperature of a fine grid does better), and keeps the
predicted class."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regbench.calibration import build_calibrators
from regbench.calibration.temperature import TemperatureScaling
from regbench.errors import UserError
from synthetic_logits import logits_with_temperature


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(true_temperature):
    logits, labels = logits_with_temperature(20000, 5, true_temperature, seed=0)
    fitted = TemperatureScaling(max_iter=100).fit(logits, labels)
    assert fitted["temperature"] == pytest.approx(true_temperature, rel=0.05)


def test_fitted_temperature_minimizes_the_fit_set_nll_and_keeps_the_predictions():
    logits, labels = logits_with_temperature(2000, 4, 2.5, seed=1)
    calibrator = TemperatureScaling(max_iter=100)
    temperature = calibrator.fit(logits, labels)["temperature"]
    t = torch.tensor(temperature, dtype=torch.float64, requires_grad=True)
    nll = F.cross_entropy(logits / t, labels)
    (gradient,) = torch.autograd.grad(nll, t)
    nll = nll.detach()
    assert abs(float(gradient)) < 1e-6  # a stationary point of the NLL in T
    grid = torch.linspace(0.2, 6.0, 2901, dtype=torch.float64)
    grid_nll = torch.stack([F.cross_entropy(logits / g, labels) for g in grid])
    assert float(nll) <= float(grid_nll.min()) + 1e-9
    raw_nll = F.cross_entropy(logits, labels)
    calibrated_probs = calibrator.probabilities(logits)
    assert float(-calibrated_probs.gather(1, labels[:, None]).log().mean()) == pytest.approx(float(nll))
    assert float(nll) <= float(raw_nll)
    assert torch.equal(calibrated_probs.argmax(dim=-1), logits.argmax(dim=-1))


def test_fit_is_deterministic():
    logits, labels = logits_with_temperature(500, 3, 1.7, seed=2)
    assert TemperatureScaling(max_iter=50).fit(logits, labels) == TemperatureScaling(max_iter=50).fit(logits, labels)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_bad_max_iter_is_refused_naming_the_key(value):
    with pytest.raises(UserError, match=r"^calibrate\.temperature\.max_iter=.* is invalid: must be an integer > 0"):
        build_calibrators({"temperature": {"max_iter": value}}, seed=0)
