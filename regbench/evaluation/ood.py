"""Out-of-distribution detection (`eval=[ood]`): the in-distribution test split against each out-distribution
dataset's test split, each sample scored by the trained model (higher: more in-distribution), and each score's
AUROC, AUPR and FPR at 95% TPR. Scores: MSP (Hendrycks & Gimpel, ICLR 2017), the max logit (Hendrycks et al., ICML
2022), the negative energy T * logsumexp(f / T) (Liu et al., NeurIPS 2020, eq. 7 with the sign flipped so that
higher means in-distribution), the Mahalanobis score on the penultimate features (see mahalanobis.py) and the
Mahalanobis feature ensemble (see mahalanobis_ensemble.py).

The ensemble's layer weights are fitted on the in-distribution validation split against either its FGSM-perturbed
copy (`fgsm`: no out-distribution image is seen, one set of weights for every dataset) or, as the paper does, part
of each out-distribution set (`ood_validation`: min(validation size, half the set) of its images, drawn with the
run's seed, fit that dataset's weights and are left out of every score's metrics for it)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from regbench.specs.backbones import BACKBONE_TRAITS, BACKBONES
from regbench.data.shape import has_validation_split
from regbench.errors import check, UserError
from regbench.evaluation.detection_metrics import detection_metrics
from regbench.evaluation.mahalanobis import TiedGaussians, preprocessed_score
from regbench.evaluation.mahalanobis_ensemble import (EnsembleWeights, LayerGaussians, fgsm_images,
                                                      fit_ensemble_weights, layer_features_function)
from regbench.evaluation.ood_data import ood_images
from regbench.specs.evaluation import (EVALUATIONS, HELD_OUT, MAHALANOBIS_ENSEMBLE, MAHALANOBIS_LAYERS, OOD_DATASETS,
                                       OOD_SCORES)


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


def check_ensemble_layers(layers: str, backbone: str) -> None:
    check(layers in MAHALANOBIS_LAYERS, "mahalanobis_layers", layers, f"allowed: {', '.join(MAHALANOBIS_LAYERS)}")
    BACKBONES.get(backbone)  # registers its traits
    check(layers != "all" or BACKBONE_TRAITS[backbone].conv_stages is not None, "mahalanobis_layers", layers,
          f"all takes the outputs of the backbone's stages, and backbone={backbone} has none; use penultimate or a "
          f"backbone with stages, e.g. convnet or resnet18")


def fit_split(images: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(`count` images drawn with `seed`, the others), each in their order."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:count].sort().values], images[order[count:].sort().values]


@EVALUATIONS.register("ood")
class OODDetection:
    name = "ood"

    def __init__(self, *, datasets: list[str], scores: list[str], energy_temperature: float,
                 mahalanobis_epsilon: float, max_images: int, mahalanobis_layers: str, mahalanobis_ensemble_fit: str,
                 mahalanobis_ensemble_l2: float, mahalanobis_fgsm_epsilon: float, data: Mapping[str, Any], seed: int,
                 backbone: str):
        if data["name"] == "modular":
            raise UserError("eval=[ood] compares images, but data=modular's inputs are one-hot codes of numbers; "
                            "drop ood from eval or train on an image dataset")
        self.datasets = check_names("datasets", datasets, OOD_DATASETS)
        check(data["name"] not in self.datasets, "datasets", self.datasets,
              f"must not hold the in-distribution dataset data={data['name']}")
        check(HELD_OUT not in self.datasets or len(data["holdout_classes"]) > 0, "datasets", self.datasets,
              f"{HELD_OUT} is the test images of the classes data.holdout_classes holds out, and it holds none; set "
              f"data.holdout_classes=[...]")
        self.scores = check_names("scores", scores, OOD_SCORES)
        check_ensemble_layers(mahalanobis_layers, backbone)
        if MAHALANOBIS_ENSEMBLE in self.scores:
            check(has_validation_split(data), "scores",
                  self.scores, f"{MAHALANOBIS_ENSEMBLE} fits its layer weights on the validation split, but "
                  f"data.val_fraction={data['val_fraction']!r} leaves none; set data.val_fraction in (0, 1)")
        self.energy_temperature, self.epsilon, self.max_images = energy_temperature, mahalanobis_epsilon, max_images
        self.layers, self.ensemble_fit = mahalanobis_layers, mahalanobis_ensemble_fit
        self.ensemble_l2, self.fgsm_epsilon = mahalanobis_ensemble_l2, mahalanobis_fgsm_epsilon
        self.data, self.seed = data, seed
        self._out_images: dict[str, torch.Tensor] = {}  # filled by prepare(), for the final and the best model

    def prepare(self, datamodule) -> None:
        """Load every out-distribution test split before training: a missing file stops the run at its start."""
        self._out_images = {name: ood_images(name, self.data, datamodule, self.max_images, self.seed)
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
        ensemble = self._layer_gaussians(module, network, datamodule) if MAHALANOBIS_ENSEMBLE in self.scores else None
        in_images = torch.cat([images for images, _, _ in datamodule.unsharded_batches("test")])
        in_scores = self._scores(module, network, gaussians, ensemble, in_images, datamodule.batch_size)
        validation = self._validation_layer_scores(module, ensemble, datamodule) if ensemble is not None else None
        weights = (self._fgsm_weights(module, network, ensemble, datamodule, validation)
                   if ensemble is not None and self.ensemble_fit == "fgsm" else None)
        metrics: dict[str, float] = {}
        for dataset in self.datasets:
            out_images = self._out_images[dataset]
            if ensemble is not None and self.ensemble_fit == "ood_validation":
                weights, out_images = self._ood_validation_weights(module, ensemble, datamodule, validation,
                                                                   out_images)
            out_scores = self._scores(module, network, gaussians, ensemble, out_images, datamodule.batch_size)
            for score in self.scores:
                in_values, out_values = in_scores[score], out_scores[score]
                if score == MAHALANOBIS_ENSEMBLE:
                    in_values, out_values = weights.score(in_values), weights.score(out_values)
                for metric, value in detection_metrics(in_values.cpu().numpy(), out_values.cpu().numpy()).items():
                    metrics[ood_metric(dataset, score, prefix, metric)] = value
        return metrics

    @staticmethod
    def _features(module, network: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
        features_of = feature_function(module, network)
        with torch.no_grad():
            pairs = [(features_of(images.to(module.device)), labels.to(module.device)) for images, labels, _ in batches]
        return torch.cat([f for f, _ in pairs]), torch.cat([labels for _, labels in pairs])

    def _layer_gaussians(self, module, network: nn.Module, datamodule) -> LayerGaussians:
        features_of = layer_features_function(feature_body(module, network), self.layers, module.in_memory_format)
        return LayerGaussians(features_of, ((images.to(module.device), labels.to(module.device))
                                            for images, labels, _ in datamodule.unaugmented_train_batches()))

    def _layer_scores(self, module, ensemble: LayerGaussians, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        return torch.cat([ensemble.scores(batch.to(module.device), self.epsilon) for batch in images.split(batch_size)])

    def _validation_layer_scores(self, module, ensemble: LayerGaussians, datamodule) -> torch.Tensor:
        return torch.cat([ensemble.scores(images.to(module.device), self.epsilon)
                          for images, _, _ in datamodule.unsharded_batches("val")])

    def _fgsm_weights(self, module, network: nn.Module, ensemble: LayerGaussians, datamodule,
                      validation: torch.Tensor) -> EnsembleWeights:
        """The validation split (its layer scores `validation`: in) against its FGSM-perturbed copy (out)."""
        step = self.fgsm_epsilon / datamodule.std.to(module.device)
        logits_of = lambda images: network(module.in_memory_format(images))  # noqa: E731
        perturbed = torch.cat([fgsm_images(logits_of, images.to(module.device), labels.to(module.device), step)
                               for images, labels, _ in datamodule.unsharded_batches("val")])
        return fit_ensemble_weights(validation, self._layer_scores(module, ensemble, perturbed, datamodule.batch_size),
                                    self.ensemble_l2)

    def _ood_validation_weights(self, module, ensemble: LayerGaussians, datamodule, validation: torch.Tensor,
                                out_images: torch.Tensor) -> tuple[EnsembleWeights, torch.Tensor]:
        """The validation split (its layer scores `validation`: in) against part of the out-distribution set (out),
        and the set's other images."""
        count = min(len(validation), len(out_images) // 2)
        fit_images, scored_images = fit_split(out_images, count, self.seed)
        weights = fit_ensemble_weights(validation,
                                       self._layer_scores(module, ensemble, fit_images, datamodule.batch_size),
                                       self.ensemble_l2)
        return weights, scored_images

    def _scores(self, module, network: nn.Module, gaussians: TiedGaussians | None, ensemble: LayerGaussians | None,
                images: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Every selected score of every image, batch by batch; the ensemble's per-layer scores (N, layers)."""
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
                elif score == MAHALANOBIS_ENSEMBLE:
                    parts[score].append(ensemble.scores(batch, self.epsilon))
                elif score == "method":
                    with torch.no_grad():
                        parts[score].append(module.ood_method_score(network, batch).double())
                else:
                    parts[score].append(logit_scores[score](logits))
        return {score: torch.cat(values) for score, values in parts.items()}


def feature_body(module, network: nn.Module) -> nn.Module:
    """The evaluated network when it has the backbone's `forward_features`, else the module's backbone."""
    return network if hasattr(network, "forward_features") else module.model


def feature_function(module, network: nn.Module):
    """The penultimate features (the head's input) of the evaluated network, as a function of its inputs."""
    body = feature_body(module, network)
    return lambda images: body.forward_features(module.in_memory_format(images)).float()
