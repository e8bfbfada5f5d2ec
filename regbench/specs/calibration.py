"""The post-hoc calibrator registry's declared entries (`calibrate=[...]`): each is fitted on the validation logits
and applied to the test logits, after training."""
from regbench.registry import REQUIRED, Entry, Registry

CALIBRATORS = Registry("calibrator", "calibrate", context=("seed",), entries={
    "h_calibration": Entry("regbench.calibration.h_calibration", {
        "num_temperatures": REQUIRED, "window": REQUIRED, "epsilon": REQUIRED, "steps": REQUIRED, "lr": REQUIRED}),
    "temperature": Entry("regbench.calibration.temperature", {"max_iter": REQUIRED}),
})
