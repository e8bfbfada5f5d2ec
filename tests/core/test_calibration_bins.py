"""The reliability bins in metrics.json give back torchmetrics' ECE, also for saturated (confidence 1.0) outputs."""
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from regbench.calibration.bins import ReliabilityBins, expected_calibration_error


def saturated_batch():
    # 50 samples at confidence exactly 1.0 (a float32 softmax saturates) that are 60% right, and 50 at 0.95-0.99
    # that are all right: torchmetrics keeps them in separate bins, pooling them would hide most of the gap.
    gen = torch.Generator().manual_seed(0)
    logits = torch.zeros(100, 3)
    logits[:50, 0] = 40.0
    logits[50:, 0] = torch.log(torch.empty(50).uniform_(0.95, 0.99, generator=gen) / 0.01) + torch.log(
        torch.tensor(0.5))
    labels = torch.zeros(100, dtype=torch.long)
    labels[30:50] = 1
    return logits.softmax(-1), labels


def test_bins_reproduce_torchmetrics_ece_with_saturated_confidences():
    probs, labels = saturated_batch()
    confidence = probs.max(-1).values
    assert (confidence[:50] == 1.0).all() and (confidence[50:] < 1.0).all() and (confidence[50:] > 14 / 15).all()
    bins = ReliabilityBins(15)
    bins.update(probs[:37], labels[:37])
    bins.update(probs[37:], labels[37:])
    computed = bins.compute()
    reference = float(MulticlassCalibrationError(num_classes=3, n_bins=15, norm="l1")(probs, labels))
    assert expected_calibration_error(computed) == pytest.approx(reference, abs=1e-6)
    assert reference > 0.15  # the separate 1.0 bin matters here: pooled, the ECE would be about 0.1
    assert computed["bin_count"][-1] == 50 and computed["bin_acc"][-1] == pytest.approx(0.6)
    assert len(computed["bin_edges"]) == len(computed["bin_count"]) + 1 and computed["bin_edges"][-2:] == [1.0, 1.0]


def test_a_confidence_on_a_bin_boundary_goes_up_as_in_torchmetrics():
    probs = torch.tensor([[0.6, 0.4], [0.8, 0.2]])  # 0.6 = 9/15 and 0.8 = 12/15 lie on boundaries
    bins = ReliabilityBins(15)
    bins.update(probs, torch.tensor([0, 1]))
    counts = bins.compute()["bin_count"]
    assert counts[9] == 1 and counts[12] == 1
    reference = float(MulticlassCalibrationError(num_classes=2, n_bins=15, norm="l1")(probs, torch.tensor([0, 1])))
    assert expected_calibration_error(bins.compute()) == pytest.approx(reference, abs=1e-6)
