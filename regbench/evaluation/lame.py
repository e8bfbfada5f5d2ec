"""LAME on test streams (`eval=[lame]`, Boudiaf et al., CVPR 2022): the trained model's outputs corrected batch by
batch (lame_math.py) on the clean test split in i.i.d. order and in the paper's non-i.i.d. order (the stream
sorted by class, so that a batch holds one or two classes), and on the same two orders of one corruption when
eval.lame.corruption is set; each stream's accuracy with LAME and without (`..._acc_unadapted`)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from regbench.errors import check
from regbench.corruptions.ops import corrupt
from regbench.evaluation.lame_math import lame
from regbench.evaluation.ood import feature_function
from regbench.data.shape import check_colour_corruptions
from regbench.evaluation.shift_data import (check_built_corruptions, check_shift_dataset,
                                            evaluated_network, normalized, test_pixels)
from regbench.specs.evaluation import CORRUPTIONS, EVALUATIONS

ORDERS = ("iid", "class_ordered")


def stream_order(labels: torch.Tensor, order: str, seed: int) -> torch.Tensor:
    """Positions of the test stream: a seeded shuffle (iid), or that shuffle stably sorted by label."""
    shuffled = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    if order == "iid":
        return shuffled
    return shuffled[torch.sort(labels[shuffled], stable=True).indices]


@EVALUATIONS.register("lame")
class LAMEStreams:
    name = "lame"

    def __init__(self, *, knn: int, max_steps: int, batch_size: int, corruption: str | None, severity: int,
                 data: Mapping[str, Any], seed: int):
        check_shift_dataset("lame", data)
        check_built_corruptions("corruption", corruption)
        check(corruption is None or corruption in CORRUPTIONS, "corruption", corruption,
              f"must be null or one of {', '.join(CORRUPTIONS)}")
        check_colour_corruptions("corruption", corruption, data)
        self.knn, self.max_steps, self.batch_size = knn, max_steps, batch_size
        self.corruption, self.severity, self.seed = corruption, severity, seed

    def prepare(self, datamodule) -> None:
        """Nothing to load: the streams are made from the test split when evaluated."""

    def evaluate(self, module, datamodule, prefix: str) -> dict[str, float]:
        images, labels = test_pixels(datamodule)
        pixels = {"": images.float() / 255}
        if self.corruption is not None:
            pixels[f"{self.corruption}."] = corrupt(images, self.corruption, self.severity, self.seed)
        metrics: dict[str, float] = {}
        with evaluated_network(module) as network:
            for stream, stream_pixels in pixels.items():
                for order in ORDERS:
                    positions = stream_order(labels, order, self.seed)
                    adapted, unadapted = self._accuracies(module, network, stream_pixels[positions],
                                                          labels[positions], datamodule)
                    metrics[f"lame.{stream}{order}.{prefix}_acc"] = adapted
                    metrics[f"lame.{stream}{order}.{prefix}_acc_unadapted"] = unadapted
        return metrics

    def _accuracies(self, module, network: nn.Module, pixels: torch.Tensor, labels: torch.Tensor,
                    datamodule) -> tuple[float, float]:
        """Accuracy with and without LAME of the stream in its order, batch after batch."""
        features_of = feature_function(module, network)
        adapted, unadapted = [], []
        with torch.no_grad():
            for batch in pixels.split(self.batch_size):
                inputs = module.in_memory_format(normalized(batch.to(module.device), datamodule))
                probabilities = network(inputs).double().softmax(dim=1)
                corrected = lame(probabilities, features_of(inputs).double(), self.knn, self.max_steps)
                unadapted.append(probabilities.argmax(dim=1).cpu())
                adapted.append(corrected.argmax(dim=1).cpu())
        return ((torch.cat(adapted) == labels).double().mean().item(),
                (torch.cat(unadapted) == labels).double().mean().item())
