"""Per-class Gaussian mixtures over attribute groups, trained jointly with the classifier: HVCM (Li et al.,
"Hierarchical Visual Categories Modeling: A Joint Representation Learning and Density Estimation Framework for
Out-of-Distribution Detection", ICCV 2023; official code github.com/Jarvisgivemeasuit/hvcm_ood).

A head beside the classifier projects the penultimate features to attributes (a linear bottleneck, L2-normalized,
then a linear map with unit-norm rows, the official weight-normed layer with its gain fixed at 1), split into
`components` groups, each a component of its class's mixture, and to the components' weight logits. The loss
(class_gmm_math.attribute_loss) pulls each group, read as a distribution, towards its class's learnable center;
each class's component weights follow the mean softmax of its samples' weight logits by a moving average. After
every epoch each class's and group's Gaussian is fitted to the training attributes, and the score of an image is
minus the smallest over classes of the weighted sum of its groups' half Mahalanobis distances.

Reconstructed for regbench (see the README row): the official CIFAR code trains this loss alone and a linear
classifier afterwards; here it is added to the cross-entropy with `weight`, so the classifier trains jointly. The
component weights start uniform (the official code starts from a softmax of random normals), and the Gaussians
are refitted after every epoch so that every checkpoint holds those of its own weights (the official code fits
them once after training)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import UserError, check
from regbench.regularizers.base import Regularizer
from regbench.regularizers.class_gmm_math import (GroupGaussians, attribute_loss, fit_group_gaussians,
                                                   in_distribution_score)
from regbench.regularizers.dropout import wrap_head
from regbench.specs.regularizers import REGULARIZERS, Exclusion

# The official head's bottleneck initialization (a truncated normal, DINO's).
BOTTLENECK_INIT_STD = 0.02


class ClassGMMHead(nn.Module):
    """The classifier on the pooled features, the attribute projection beside it, the class centers, the component
    weights and the fitted Gaussians. `keep_next` makes the next forward keep its attributes and weight logits in
    `kept` (the training forward's, not those of other techniques' extra passes)."""

    def __init__(self, classifier: nn.Module, num_features: int, num_classes: int, attribute_dim: int,
                 bottleneck_dim: int, components: int):
        super().__init__()
        self.classifier = classifier
        self.components, self.group_dim = components, attribute_dim // components
        self.bottleneck = nn.Linear(num_features, bottleneck_dim)
        nn.init.trunc_normal_(self.bottleneck.weight, std=BOTTLENECK_INIT_STD, a=-2 * BOTTLENECK_INIT_STD,
                              b=2 * BOTTLENECK_INIT_STD)
        nn.init.zeros_(self.bottleneck.bias)
        self.attribute_directions = nn.Parameter(nn.Linear(bottleneck_dim, attribute_dim, bias=False).weight.detach())
        self.weight_layer = nn.Linear(bottleneck_dim, components, bias=False)
        self.centers = nn.Parameter(torch.randn(num_classes, components, self.group_dim))
        self.register_buffer("component_weights", torch.full((num_classes, components), 1.0 / components))
        self.register_buffer("means", torch.zeros(num_classes, components, self.group_dim, dtype=torch.float64))
        self.register_buffer("precisions", torch.zeros(num_classes, components, self.group_dim, self.group_dim,
                                                       dtype=torch.float64))
        self.register_buffer("present", torch.zeros(num_classes, dtype=torch.bool))
        self.keep_next = False
        self.kept: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.keep_next:
            self.kept, self.keep_next = self.project(features), False
        return self.classifier(features)

    def project(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, d) attributes and (B, K) component-weight logits of (B, D) features."""
        hidden = F.normalize(self.bottleneck(features.float()), dim=-1)
        attributes = hidden @ F.normalize(self.attribute_directions, dim=1).t()
        return attributes.unflatten(-1, (self.components, self.group_dim)), self.weight_layer(hidden)

    def attributes_of(self, network: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attributes and weight logits of `images` through `network`, which holds this head."""
        self.keep_next = True
        network(images)
        kept, self.kept = self.kept, None
        return kept

    @property
    def gaussians(self) -> GroupGaussians:
        return GroupGaussians(self.means, self.precisions, self.present)


def gmm_head(network: nn.Module) -> ClassGMMHead:
    """The network's ClassGMMHead, wherever other techniques' wrappers put it."""
    head, = (module for module in network.modules() if isinstance(module, ClassGMMHead))
    return head


def class_count(classifier: nn.Module) -> int:
    """The number of classes: the output width of the classifier's last linear layer."""
    linears = [module for module in classifier.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserError(f"regularizer=class_gmm needs a linear head on the pooled features; the backbone's head is "
                        f"{type(classifier).__name__}")
    return linears[-1].out_features


@REGULARIZERS.register("class_gmm")
class ClassGMM(Regularizer):
    name = "class_gmm"

    def __init__(self, *, components: int, attribute_dim: int, bottleneck_dim: int, covariance: str, weight: float,
                 center_weight: float, weight_momentum: float, covariance_ridge: float, seed: int):
        check(attribute_dim % components == 0, "attribute_dim", attribute_dim,
              f"must be a multiple of components={components}, each component modelling an equal group of attributes")
        self.components, self.attribute_dim, self.bottleneck_dim = components, attribute_dim, bottleneck_dim
        self.covariance, self.weight, self.center_weight = covariance, float(weight), float(center_weight)
        self.weight_momentum, self.covariance_ridge = float(weight_momentum), float(covariance_ridge)
        self.network: list[nn.Module] = []  # the wrapped network (a list: the model registers it, not this)

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        for other in others:
            why = None
            if {Exclusion.WEIGHT_AVERAGING, Exclusion.EVALUATED_NETWORK} & set(other.exclusive) or other.copies_network:
                why = "the class Gaussians are fitted to the trained network's attributes, and it evaluates another"
            elif Exclusion.INPUT_MIXING in other.exclusive:
                why = "the attributes are pulled to their own class's center, and it mixes the classes of a batch"
            elif type(other).task_loss is not Regularizer.task_loss:
                why = "it feeds the head several copies of the batch, and the attributes are kept for one"
            if why:
                raise UserError(f"regularizer=class_gmm cannot be stacked with {other.name}: {why}")

    def wrap_model(self, model: nn.Module) -> nn.Module:
        width = getattr(model, "num_features", None)
        if width is None:
            raise UserError(f"regularizer=class_gmm needs a backbone with `num_features`; {type(model).__name__} has "
                            f"none")
        model = wrap_head(model, self.name, lambda head: ClassGMMHead(
            head, width, class_count(head), self.attribute_dim, self.bottleneck_dim, self.components))
        self.network = [model]
        return model

    def mix_batch(self, images: torch.Tensor, targets: torch.Tensor,
                  index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gmm_head(self.network[0]).keep_next = True  # the training forward comes next
        return images, targets

    def loss(self, per_sample: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
             model: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        head = gmm_head(self.network[0])
        (attributes, weight_logits), head.kept = head.kept, None
        labels = targets.argmax(dim=-1)
        # In float32 under mixed precision: the divergences of near-equal distributions are small differences.
        extra = attribute_loss(attributes.float(), weight_logits.float(), head.centers[labels], self.weight,
                               self.center_weight)
        self.update_component_weights(head, weight_logits.detach(), labels)
        return per_sample + extra.to(per_sample.dtype)

    @torch.no_grad()
    def update_component_weights(self, head: ClassGMMHead, weight_logits: torch.Tensor, labels: torch.Tensor) -> None:
        """w_c <- momentum * mean softmax(weight logits) of the batch's class-c samples + (1 - momentum) * w_c, for
        every class in the batch."""
        weights = head.component_weights
        sums = torch.zeros_like(weights).index_add_(0, labels, weight_logits.float().softmax(dim=-1))
        counts = torch.bincount(labels, minlength=weights.shape[0]).to(weights.dtype)[:, None]
        seen = counts > 0
        batch_mean = sums / counts.clamp_min(1)
        weights.copy_(torch.where(seen, self.weight_momentum * batch_mean + (1 - self.weight_momentum) * weights,
                                  weights))

    def on_train_batch_end(self, model: nn.Module, progress) -> None:
        if progress.epoch_finished:  # before validation and checkpointing: each checkpoint keeps its own fit
            self.fit(self.network[0], progress.train_batches)

    @torch.no_grad()
    def fit(self, network: nn.Module, batches: Iterable) -> None:
        """Each class's and group's Gaussian of the training images' attributes (eval mode, each image once)."""
        head = gmm_head(network)
        device = head.centers.device
        was_training = network.training
        network.eval()
        attributes, labels, seen = [], [], set()
        try:
            for images, batch_labels, index in batches:
                first = []  # whether each image is seen here for the first time (an upsampled epoch repeats some)
                for i in index.tolist():
                    first.append(i not in seen)
                    seen.add(i)
                keep = torch.tensor(first, dtype=torch.bool, device=images.device)
                if keep.any():
                    batch_attributes, _ = head.attributes_of(network, images[keep].to(device))
                    attributes.append(batch_attributes.double())
                    labels.append(batch_labels.to(keep.device)[keep].to(device))
        finally:
            network.train(was_training)
        fitted = fit_group_gaussians(torch.cat(attributes), torch.cat(labels), len(head.present), self.covariance,
                                     self.covariance_ridge)
        head.means.copy_(fitted.means)
        head.precisions.copy_(fitted.precisions)
        head.present.copy_(fitted.present)

    def ood_score(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        head = gmm_head(network)
        if not head.present.any():
            raise RuntimeError("regularizer=class_gmm has no fitted class Gaussians: no training epoch has ended")
        attributes, _ = head.attributes_of(network, images)
        return in_distribution_score(attributes, head.gaussians, head.component_weights)


__all__ = ["ClassGMM", "ClassGMMHead", "gmm_head"]
