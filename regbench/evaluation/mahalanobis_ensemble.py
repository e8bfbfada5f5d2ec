"""The Mahalanobis feature ensemble (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018, sec. 2.2 and Algorithm 1): class-conditional Gaussians with a tied
covariance fitted on the training features of every chosen layer (a feature map averaged over space, as the
official code does), each layer's Mahalanobis score (with the input preprocessing of eq. 4), and the layers' scores
weighted by an L2-regularized logistic regression of in-distribution (1) against out-distribution (0) samples. The
ensemble's score is the regression's log-odds of in-distribution, higher for images more like the training data.

The layers (eval.ood.mahalanobis_layers): `penultimate`, the head's input alone; `all`, the output of every stage of
the backbone's `stage_blocks()` but the last (the last stage's pooled output is, or is normalized into, the
penultimate features), then the penultimate features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.evaluation.mahalanobis import TiedGaussians, preprocessed_score
from regbench.probing.linear import LinearProbe, fit_probe

# L-BFGS iterations of the weights' fit: its convergence, not its result.
FIT_MAX_ITER = 1000

LayerFeatures = Callable[[torch.Tensor], list[torch.Tensor]]


def pooled(output: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps averaged over space to (B, C); (B, D) features as they are."""
    return output.flatten(2).mean(dim=2) if output.dim() > 2 else output


def tapped_stages(body: nn.Module, layers: str) -> list[nn.Module]:
    """The modules whose outputs are the ensemble's layers before the penultimate features."""
    if layers == "penultimate":
        return []
    return [blocks[-1] for blocks in body.stage_blocks()[:-1]]


def layer_features_function(body: nn.Module, layers: str,
                            to_input: Callable[[torch.Tensor], torch.Tensor]) -> LayerFeatures:
    """A function of the inputs giving each layer's (B, D_l) features in forward order, the penultimate last: one
    forward pass of `body.forward_features`, the earlier layers read by forward hooks."""
    stages = tapped_stages(body, layers)

    def features(images: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        handles = [stage.register_forward_hook(lambda _module, _inputs, output: outputs.append(pooled(output).float()))
                   for stage in stages]
        try:
            penultimate = body.forward_features(to_input(images)).float()
        finally:
            for handle in handles:
                handle.remove()
        return [*outputs, penultimate]

    return features


class LayerGaussians:
    """One TiedGaussians per layer, fitted on the layers' features of the (image, label) batches."""

    def __init__(self, features_of: LayerFeatures, batches):
        per_layer: list[list[torch.Tensor]] = []
        labels = []
        with torch.no_grad():
            for images, batch_labels in batches:
                for layer, features in enumerate(features_of(images)):
                    if layer == len(per_layer):
                        per_layer.append([])
                    per_layer[layer].append(features)
                labels.append(batch_labels)
        labels = torch.cat(labels)
        self.features_of = features_of
        self.gaussians = [TiedGaussians(torch.cat(features), labels) for features in per_layer]

    def scores(self, images: torch.Tensor, epsilon: float) -> torch.Tensor:
        """(N, layers): each layer's Mahalanobis score of the images, each preprocessed against its own layer."""
        return torch.stack([preprocessed_score(gaussians, lambda x, layer=layer: self.features_of(x)[layer], images,
                                               epsilon)
                            for layer, gaussians in enumerate(self.gaussians)], dim=1)


@dataclass
class EnsembleWeights:
    """The fitted logistic regression on the layers' scores (standardized, as the probe standardizes)."""

    probe: LinearProbe

    def score(self, layer_scores: torch.Tensor) -> torch.Tensor:
        """The log-odds of in-distribution: w . s + b (on the CPU, where the weights were fitted)."""
        logits = self.probe.logits(layer_scores.cpu())
        return logits[:, 1] - logits[:, 0]


def fit_ensemble_weights(in_scores: torch.Tensor, out_scores: torch.Tensor, l2: float) -> EnsembleWeights:
    """Logistic regression of in (1) against out (0) on the layers' scores: mean cross-entropy + l2 / 2 times the
    squared norm of the two-class softmax weights, i.e. scikit-learn's binary LogisticRegression with
    C = 2 / (l2 * n) on the standardized scores (the softmax's optimum splits w into +w/2 and -w/2)."""
    scores = torch.cat([in_scores, out_scores]).double().cpu()
    labels = torch.cat([torch.ones(len(in_scores)), torch.zeros(len(out_scores))]).long()
    return EnsembleWeights(fit_probe(scores, labels, 2, l2, FIT_MAX_ITER))


def fgsm_images(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor,
                step: torch.Tensor) -> torch.Tensor:
    """The fast gradient sign step x + step * sign(grad_x CE(f(x), y)) of each image (Goodfellow et al. 2015), the
    pseudo out-distribution of the official code's adversarial validation; `step` broadcasts over the images (the
    pixel-scale epsilon divided by each channel's std). The model's parameter gradients stay as they are."""
    with torch.enable_grad():
        inputs = images.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(logits_of(inputs).float(), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, inputs)
    return (images + step * gradient.sign()).detach()
