"""Corruption robustness (`eval=[corruptions]`, Hendrycks & Dietterich, ICLR 2019): the test split corrupted on the
fly, seeded, by each selected CIFAR-10-C corruption at each selected severity (corruption_ops.py); the accuracy per
corruption and severity, its mean over severities per corruption, and the mean corruption accuracy over all."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.errors import check
from regbench.corruptions.ops import corrupt
from regbench.evaluation.ood import check_names
from regbench.data.shape import check_colour_corruptions
from regbench.evaluation.shift_data import (check_built_corruptions, check_shift_dataset,
                                            evaluated_network, predictions, test_pixels)
from regbench.specs.evaluation import CORRUPTIONS, EVALUATIONS, SEVERITIES


def check_severities(key: str, severities: Any) -> list[int]:
    severities = list(severities) if isinstance(severities, (list, tuple)) else severities
    check(isinstance(severities, list) and len(severities) > 0 and all(s in SEVERITIES for s in severities)
          and all(isinstance(s, int) and not isinstance(s, bool) for s in severities)
          and len(set(severities)) == len(severities), key, severities,
          "must be a non-empty list of distinct severities from 1, 2, 3, 4, 5")
    return severities


@EVALUATIONS.register("corruptions")
class CorruptionAccuracy:
    name = "corruptions"

    def __init__(self, *, names: list[str], severities: list[int], data: Mapping[str, Any], seed: int):
        check_shift_dataset("corruptions", data)
        check_built_corruptions("names", names)
        self.names = check_names("names", names, CORRUPTIONS)
        check_colour_corruptions("names", self.names, data)
        self.severities = check_severities("severities", severities)
        self.seed = seed

    def prepare(self, datamodule) -> None:
        """Nothing to load: the corrupted images are made from the test split when evaluated."""

    def evaluate(self, module, datamodule, prefix: str) -> dict[str, float]:
        images, labels = test_pixels(datamodule)
        metrics: dict[str, float] = {}
        with evaluated_network(module) as network:
            for name in self.names:
                accuracies = []
                for severity in self.severities:
                    corrupted = corrupt(images, name, severity, self.seed)
                    accuracy = (predictions(module, network, corrupted, datamodule) == labels).double().mean().item()
                    metrics[f"corruptions.{name}.{severity}.{prefix}_acc"] = accuracy
                    accuracies.append(accuracy)
                metrics[f"corruptions.{name}.{prefix}_acc"] = sum(accuracies) / len(accuracies)
        metrics[f"corruptions.{prefix}_acc_mean"] = (sum(metrics[f"corruptions.{name}.{prefix}_acc"]
                                                         for name in self.names) / len(self.names))
        return metrics
