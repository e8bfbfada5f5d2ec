"""The post-hoc calibrator registry's declared entries (`calibrate=[...]`): each is fitted on the validation logits
and applied to the test logits, after training. Their parameters' value rules are torch-free, so a bad value is one
line before the model code loads."""
from __future__ import annotations

from typing import Any

from regbench.errors import check, check_non_negative, check_positive, check_positive_int
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.values import is_int


def even_window(key: str, value: Any) -> None:
    check(is_int(value) and value > 0 and value % 2 == 0, key, value,
          "must be an even integer > 0 (window / 2 events on either side of each event)")


def probability_gap(key: str, value: Any) -> None:
    check_non_negative(key, value)
    check(value < 1, key, value, "must be < 1 (a probability gap of 1 bounds nothing)")


CALIBRATORS = Registry("calibrator", "calibrate", context=("seed",), entries={
    "h_calibration": Entry("regbench.calibration.h_calibration", {
        "num_temperatures": REQUIRED, "window": REQUIRED, "epsilon": REQUIRED, "steps": REQUIRED, "lr": REQUIRED},
        {"num_temperatures": check_positive_int, "window": even_window, "epsilon": probability_gap,
         "steps": check_positive_int, "lr": check_positive}),
    "temperature": Entry("regbench.calibration.temperature", {"max_iter": REQUIRED}, {"max_iter": check_positive_int}),
})
