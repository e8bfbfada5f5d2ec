"""PALM (Lu, Gong, Wang, Xue, Yao & Moore, "Learning with Mixture of Prototypes for Out-of-Distribution Detection",
ICLR 2024, arXiv 2402.02653; official code github.com/jeff024/PALM) as a trained OOD method.

A projection MLP maps the penultimate features to a unit-sphere embedding; each class keeps `prototypes` unit
prototypes. Each step, every embedding is softly assigned to all prototypes by Sinkhorn-Knopp, the assignment is
pruned to the `top_k` largest of its own class, the prototypes move by EMA towards the embeddings assigned to them,
and the loss adds `weight` x (the MLE loss of the embeddings under their class's prototype mixture +
`contrastive_weight` x the prototype-level contrastive loss) to the cross-entropy. The OOD score is the paper's:
SSD+'s Mahalanobis score on the L2-normalized penultimate features, one Gaussian fitted to the training set's.

regbench's deviations: the classifier head is trained with cross-entropy beside PALM's losses (the paper trains
the representation with PALM's losses alone; here test accuracy must exist), one view per image (the paper uses two
augmented views), and the Gaussian is fitted in eval mode on the training batches as trained (with the dataset's
augmentation) at each epoch's end, so that the best checkpoint keeps the Gaussian of its own weights.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import UserError, check
from regbench.regularizers.base import Regularizer
from regbench.regularizers.dropout import wrap_head
from regbench.regularizers.palm_math import (FeatureGaussian, assignment_weights, fit_feature_gaussian,
                                             mahalanobis_score, mle_loss, own_class_top_k, prototype_classes,
                                             prototype_contrastive_loss, sinkhorn, updated_prototypes)
from regbench.specs.regularizers import REGULARIZERS, Exclusion


class EmbeddingHead(nn.Module):
    """The classifier on the pooled features, which it records at each forward, and PALM's projection MLP
    (Linear-ReLU-Linear, as the official code's) to the embedding space."""

    def __init__(self, classifier: nn.Module, embedding_dim: int):
        super().__init__()
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UserError(f"regularizer=palm needs a linear head on the pooled features; the backbone's head is "
                            f"{type(classifier).__name__}")
        self.width, self.num_classes = linears[0].in_features, linears[-1].out_features
        self.classifier = classifier
        self.projector = nn.Sequential(nn.Linear(self.width, self.width), nn.ReLU(),
                                       nn.Linear(self.width, embedding_dim))
        self.features: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.features = features
        return self.classifier(features)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(features.float()), dim=1)


def embedding_head(model: nn.Module) -> EmbeddingHead:
    return next(m for m in model.modules() if isinstance(m, EmbeddingHead))


@REGULARIZERS.register("palm")
class PALM(Regularizer, nn.Module):
    name = "palm"

    def __init__(self, *, prototypes: int, top_k: int, embedding_dim: int, temperature: float,
                 prototype_temperature: float, momentum: float, sinkhorn_epsilon: float, sinkhorn_iterations: int,
                 weight: float, contrastive_weight: float, seed: int):
        super().__init__()
        check(top_k <= prototypes, "top_k", top_k,
              f"must be at most prototypes={prototypes} (the prototypes of a class a sample may be assigned to)")
        self.per_class, self.top_k, self.embedding_dim = prototypes, top_k, embedding_dim
        self.temperature, self.prototype_temperature = float(temperature), float(prototype_temperature)
        self.momentum = float(momentum)
        self.epsilon, self.iterations = float(sinkhorn_epsilon), sinkhorn_iterations
        self.weight, self.contrastive_weight = float(weight), float(contrastive_weight)
        self.seed = seed
        # Shaped by wrap_model from the head; saved in checkpoints, so the best checkpoint keeps its own.
        self.register_buffer("prototypes", torch.zeros(0, embedding_dim))
        self.register_buffer("feature_mean", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("feature_std", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("precision", torch.zeros(0, 0, dtype=torch.float64))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long), persistent=False)
        self.network: list[nn.Module] = []  # the wrapped network (a list, so it is not registered as a submodule)

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        for other in others:
            if Exclusion.INPUT_MIXING in other.exclusive:
                raise UserError(f"regularizer=palm cannot be stacked with {other.name}: PALM assigns each image to "
                                f"the prototypes of its one class, which mixed images do not have")
            if {Exclusion.WEIGHT_AVERAGING, Exclusion.EVALUATED_NETWORK} & set(other.exclusive) \
                    or other.copies_network:
                raise UserError(f"regularizer=palm cannot be stacked with {other.name}: PALM's score is fitted to the "
                                f"trained network's features, not to the network that {other.name} evaluates")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        model = wrap_head(model, self.name, lambda head: EmbeddingHead(head, self.embedding_dim))
        head = embedding_head(model)
        # The official code's initialization: uniform in [0, 1)^D, put on the sphere.
        start = torch.rand(head.num_classes * self.per_class, self.embedding_dim,
                           generator=torch.Generator().manual_seed(self.seed))
        self.prototypes = F.normalize(start, dim=1)
        self.classes = prototype_classes(head.num_classes, self.per_class)
        self.feature_mean = torch.zeros(head.width, dtype=torch.float64)
        self.feature_std = torch.ones(head.width, dtype=torch.float64)
        self.precision = torch.zeros(head.width, head.width, dtype=torch.float64)
        self.network = [model]
        return model

    def loss(self, per_sample: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
             model: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        head = embedding_head(self.network[0])
        embeddings = head.embed(head.features)  # this batch's, from the forward that gave `logits`
        # In float32 under mixed precision too: exp(similarity / 0.05) underflows in half precision.
        with torch.autocast(embeddings.device.type, enabled=False):
            mle, contrastive = self.step_losses(embeddings.float(), targets.argmax(dim=1))
        return per_sample + self.weight * (mle + self.contrastive_weight * contrastive).to(per_sample.dtype)

    def step_losses(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step of PALM on a batch's unit `embeddings`: update the prototypes (EMA) and return the
        per-sample MLE loss and the prototype contrastive loss, as the official code orders them: the MLE loss sees
        the updated prototypes as constants and a fresh assignment pruned to the same prototypes; the contrastive
        loss trains the embeddings through the update."""
        old = self.prototypes.float()
        with torch.no_grad():
            assignment = sinkhorn(embeddings @ old.T, self.epsilon, self.iterations)
            kept = own_class_top_k(assignment, labels, self.classes, self.top_k)
        new = updated_prototypes(old, embeddings, assignment_weights(assignment, kept), self.momentum)
        with torch.no_grad():
            fresh = sinkhorn(embeddings @ new.T, self.epsilon, self.iterations)
        mle = mle_loss(embeddings, new, assignment_weights(fresh, kept), self.temperature)
        contrastive = prototype_contrastive_loss(new, self.classes, self.prototype_temperature)
        self.prototypes = new.detach().to(self.prototypes.dtype)
        return mle, contrastive

    def on_train_batch_end(self, model: nn.Module, progress) -> None:
        if progress.epoch_finished:  # before validation and the checkpoint that may become the best one
            self.fit_score(self.network[0], progress.train_batches)

    @torch.no_grad()
    def fit_score(self, network: nn.Module, batches: Iterable) -> None:
        """Fit the score's Gaussian to the penultimate features of the training `batches` (eval mode)."""
        head = embedding_head(network)
        device = next(network.parameters()).device
        was_training = network.training
        network.eval()
        features = []
        try:
            for images, _, _ in batches:
                network(images.to(device))
                features.append(head.features.double())
        finally:
            network.train(was_training)
            head.features = None
        gaussian = fit_feature_gaussian(torch.cat(features))
        self.feature_mean, self.feature_std, self.precision = gaussian.mean, gaussian.std, gaussian.precision

    def ood_score(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        head = embedding_head(network)
        network(images)
        features, head.features = head.features, None
        return mahalanobis_score(FeatureGaussian(self.feature_mean, self.feature_std, self.precision), features)


__all__ = ["PALM", "EmbeddingHead", "embedding_head"]
