"""Out-of-distribution detection (`eval=[ood]`): the in-distribution test split against each out-distribution
dataset's test split, each sample scored by the trained model (higher: more in-distribution), and each score's
AUROC, AUPR and FPR at 95% TPR. Scores: MSP (Hendrycks & Gimpel, ICLR 2017), the max logit (Hendrycks et al., ICML
2022), the negative energy T * logsumexp(f / T) (Liu et al., NeurIPS 2020, eq. 7 with the sign flipped so that
higher means in-distribution) and the Mahalanobis score on the penultimate features (see mahalanobis.py)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn

from regbench.errors import UserError, check, check_non_negative, check_positive, check_positive_int
from regbench.evaluation.detection_metrics import detection_metrics
from regbench.evaluation.mahalanobis import TiedGaussians, preprocessed_score
from regbench.evaluation.ood_data import ood_images
from regbench.specs.evaluation import EVALUATIONS, OOD_DATASETS, OOD_SCORES


def msp(logits: torch.Tensor) -> torch.Tensor:
    return logits.double().softmax(dim=1).max(dim=1).values


def max_logit(logits: torch.Tensor) -> torch.Tensor:
    return logits.double().max(dim=1).values


def negative_energy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return temperature * torch.logsumexp(logits.double() / temperature, dim=1)


def check_names(key: str, names: Any, allowed: tuple[str, ...]) -> list[str]:
    names = list(names) if isinstance(names, (list, tuple)) else names
    check(isinstance(names, list) and len(names) > 0 and all(name in allowed for name in names)
          and len(set(names)) == len(names), key, names,
          f"must be a non-empty list of distinct names from {', '.join(allowed)}")
    return names


def ood_metric(dataset: str, score: str, prefix: str, metric: str) -> str:
    """e.g. ood.fashion_mnist.energy.test_auroc"""
    return f"ood.{dataset}.{score}.{prefix}_{metric}"


@EVALUATIONS.register("ood")
class OODDetection:
    name = "ood"

    def __init__(self, *, datasets: list[str], scores: list[str], energy_temperature: float,
                 mahalanobis_epsilon: float, max_images: int, data: Mapping[str, Any], seed: int):
        if data["name"] == "modular":
            raise UserError("eval=[ood] compares images, but data=modular's inputs are one-hot codes of numbers; "
                            "drop ood from eval or train on an image dataset")
        self.datasets = check_names("datasets", datasets, OOD_DATASETS)
        check(data["name"] not in self.datasets, "datasets", self.datasets,
              f"must not hold the in-distribution dataset data={data['name']}")
        self.scores = check_names("scores", scores, OOD_SCORES)
        check_positive("energy_temperature", energy_temperature)
        check_non_negative("mahalanobis_epsilon", mahalanobis_epsilon)
        check_positive_int("max_images", max_images)
        self.energy_temperature, self.epsilon, self.max_images = energy_temperature, mahalanobis_epsilon, max_images
        self.data, self.seed = data, seed
        self._out_images: dict[str, torch.Tensor] = {}  # filled by prepare(), for the final and the best model

    def prepare(self, datamodule) -> None:
        """Load every out-distribution test split before training: a missing file stops the run at its start."""
        self._out_images = {name: ood_images(name, self.data, datamodule.image_shape, datamodule.mean[0, :, 0, 0],
                                             datamodule.std[0, :, 0, 0], self.max_images, self.seed)
                            for name in self.datasets}

    def evaluate(self, module, datamodule, prefix: str) -> dict[str, float]:
        network = module.eval_network()
        was_training = network.training
        network.eval()
        try:
            return self._evaluate(module, network, datamodule, prefix)
        finally:
            network.train(was_training)

    def _evaluate(self, module, network: nn.Module, datamodule, prefix: str) -> dict[str, float]:
        gaussians = (TiedGaussians(*self._features(module, network, datamodule.unaugmented_train_batches()))
                     if "mahalanobis" in self.scores else None)
        in_images = torch.cat([images for images, _, _ in datamodule.unsharded_batches("test")])
        in_scores = self._scores(module, network, gaussians, in_images, datamodule.batch_size)
        metrics: dict[str, float] = {}
        for dataset in self.datasets:
            out_scores = self._scores(module, network, gaussians, self._out_images[dataset],
                                      datamodule.batch_size)
            for score in self.scores:
                for metric, value in detection_metrics(in_scores[score], out_scores[score]).items():
                    metrics[ood_metric(dataset, score, prefix, metric)] = value
        return metrics

    @staticmethod
    def _features(module, network: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
        features_of = feature_function(module, network)
        with torch.no_grad():
            pairs = [(features_of(images.to(module.device)), labels.to(module.device)) for images, labels, _ in batches]
        return torch.cat([f for f, _ in pairs]), torch.cat([labels for _, labels in pairs])

    def _scores(self, module, network: nn.Module, gaussians: TiedGaussians | None, images: torch.Tensor,
                batch_size: int) -> dict[str, np.ndarray]:
        """Every selected score of every image, batch by batch."""
        parts: dict[str, list[torch.Tensor]] = {score: [] for score in self.scores}
        features_of = feature_function(module, network)
        logit_scores = {"msp": msp, "max_logit": max_logit,
                        "energy": lambda logits: negative_energy(logits, self.energy_temperature)}
        for batch in images.split(batch_size):
            batch = batch.to(module.device)
            with torch.no_grad():
                logits = network(module.in_memory_format(batch)).float()
            for score in self.scores:
                if score == "mahalanobis":
                    parts[score].append(preprocessed_score(gaussians, features_of, batch, self.epsilon))
                elif score == "method":
                    with torch.no_grad():
                        parts[score].append(module.ood_method_score(network, batch).double())
                else:
                    parts[score].append(logit_scores[score](logits))
        return {score: torch.cat(values).cpu().numpy() for score, values in parts.items()}


def feature_function(module, network: nn.Module):
    """The penultimate features (the head's input) of the evaluated network, as a function of its inputs."""
    body = network if hasattr(network, "forward_features") else module.model
    return lambda images: body.forward_features(module.in_memory_format(images)).float()
