"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017, sec. 4.2): the test logits
divided by one temperature T > 0, fitted by minimizing the NLL of the validation logits. Dividing every logit by
the same T > 0 keeps their order, so the predicted class (and the accuracy) never changes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from regbench.specs.calibration import CALIBRATORS


@CALIBRATORS.register("temperature")
class TemperatureScaling:
    name = "temperature"

    def __init__(self, *, max_iter: int):
        self.max_iter = max_iter
        self.temperature = 1.0

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """L-BFGS on log T (so T stays positive), from T = 1, in float64: deterministic. Returns {temperature}."""
        logits = logits.detach().double()
        log_t = torch.zeros((), dtype=torch.float64, device=logits.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-10, tolerance_change=1e-12)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
        self.temperature = float(log_t.detach().exp())
        return {"temperature": self.temperature}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.double() / self.temperature).softmax(dim=-1)
