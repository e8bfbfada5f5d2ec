"""RCAL (Zhang, Zhao, Yao, Yuan & Huang, "When Noisy Labels Meet Long Tail Dilemmas: A Representation Calibration
Method", ICCV 2023, arXiv 2211.10955) in one training run of two phases:

1. Representation phase (the first `representation_epochs`): the network's pooled features are learned without
   labels by contrastive learning (SimCLR's NT-Xent on a projection MLP, two random-crop views of each image).
2. Classifier phase: at the switch, the training set's representations are collected under the noisy labels; each
   class's outliers (likely mislabeled points) are trimmed with the local outlier factor, its Gaussian (mean,
   covariance) estimated, and each tail class's statistics calibrated from its nearest head classes. Training then
   minimizes cross-entropy on the noisy labels + `sampled_loss_weight` x the cross-entropy of the head on
   representations sampled from the calibrated Gaussians (`samples_per_class` per class per step, every class
   equally) + `individual_weight` x the squared distance of each image's representation to the one the frozen
   phase-1 network gives it (the representation stays near the contrastive one, which mislabeled data did not shape).

regbench's scale-downs: SimCLR within the run instead of a separately pre-trained MoCo encoder, random crops (and
flips where the dataset allows) as the only view augmentations, and the statistics estimated once, at the switch.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.data.batches import BatchAugment
from regbench.errors import UserError
from regbench.regularizers.base import Regularizer, refuse_rebalancing_stack
from regbench.regularizers.dropout import wrap_head
from regbench.regularizers.rcal_stats import (calibrate, class_gaussians, covariance_roots, nt_xent,
                                              sample_representations, tail_classes)
from regbench.runshape import count_or_fraction
from regbench.specs.regularizers import REGULARIZERS, Exclusion


class RepresentationHead(nn.Module):
    """The classifier on the pooled features, which it records at each forward (RCAL's representations), and the
    projection MLP that the contrastive loss sees them through (Chen et al., 2020: Linear-ReLU-Linear)."""

    def __init__(self, classifier: nn.Module, projection_dim: int):
        super().__init__()
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UserError(f"regularizer=rcal needs a linear head on the pooled features; the backbone's head is "
                            f"{type(classifier).__name__}")
        width = linears[0].in_features
        self.classifier = classifier
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim))
        self.features: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        self.features = features
        return self.classifier(features)


def representation_head(model: nn.Module) -> RepresentationHead:
    return next(m for m in model.modules() if isinstance(m, RepresentationHead))


def frozen_copy(model: nn.Module) -> nn.Module:
    """The network as it is, in eval mode and without gradients: the phase-1 representations' reference."""
    representation_head(model).features = None  # a recorded graph cannot be deep-copied
    frozen = copy.deepcopy(model).eval()
    frozen.requires_grad_(False)
    return frozen


@REGULARIZERS.register("rcal")
class RCAL(Regularizer, nn.Module):
    name = "rcal"

    def __init__(self, *, representation_epochs: int | float, temperature: float, projection_dim: int,
                 view_crop_padding: int, view_hflip: bool, lof_neighbors: int, tail_count_fraction: float,
                 calibration_neighbors: int, covariance_ridge: float, samples_per_class: int,
                 sampled_loss_weight: float, individual_weight: float, seed: int):
        super().__init__()
        self.representation_epochs = representation_epochs
        self.temperature, self.projection_dim = float(temperature), projection_dim
        self.augment = BatchAugment(view_crop_padding, hflip=view_hflip)
        self.lof_neighbors, self.tail_count_fraction = lof_neighbors, float(tail_count_fraction)
        self.calibration_neighbors, self.covariance_ridge = calibration_neighbors, float(covariance_ridge)
        self.samples_per_class = samples_per_class
        self.sampled_loss_weight, self.individual_weight = float(sampled_loss_weight), float(individual_weight)
        self.gen = torch.Generator().manual_seed(seed)
        # Set from the training labels (set_class_counts); not saved: a resumed run counts them again.
        self.register_buffer("train_counts", torch.zeros(0, dtype=torch.long), persistent=False)
        # The calibrated Gaussians (means, covariance square roots) of the classes that had points, and the training
        # indices that LOF trimmed; empty until the switch. Saved, so a run resumed in phase 2 keeps them.
        self.register_buffer("means", torch.zeros(0, 0))
        self.register_buffer("roots", torch.zeros(0, 0, 0))
        self.register_buffer("sampled_classes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("trimmed_index", torch.zeros(0, dtype=torch.long))
        self.frozen: nn.Module | None = None
        self.network: list[nn.Module] = []  # the wrapped network (a list, so it is not registered as a submodule)
        self.batch_images: torch.Tensor | None = None

    @property
    def calibrated(self) -> bool:
        return self.means.numel() > 0

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        refuse_rebalancing_stack("rcal", run, "its representations sampled equally for every class already "
                                 "rebalance the classifier")
        for other in others:
            if {Exclusion.INPUT_MIXING, Exclusion.REGIONAL_DROPOUT} & set(other.exclusive):
                raise UserError(f"regularizer=rcal cannot be stacked with {other.name}: its contrastive views and "
                                f"representations are of the images as loaded, which {other.name} rewrites")
            if Exclusion.WEIGHT_AVERAGING in other.exclusive:
                raise UserError(f"regularizer=rcal cannot be stacked with {other.name}: the averaged network would mix "
                                f"in the contrastive phase's weights, whose head was never trained")
            if other.copies_network or other.wraps_after_others:
                raise UserError(f"regularizer=rcal cannot be stacked with {other.name}: RCAL keeps a frozen copy of "
                                f"the network it wrapped, which {other.name} wraps or copies again")

    def set_class_counts(self, counts: torch.Tensor) -> None:
        self.train_counts = counts.to(self.train_counts.device)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        model = wrap_head(model, self.name, lambda head: RepresentationHead(head, self.projection_dim))
        self.network = [model]
        return model

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The statistics' sizes and the frozen copy exist only after the switch: shaped from the checkpoint.
        for name in ("means", "roots", "sampled_classes", "trimmed_index"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        saved_frozen = any(key.startswith(prefix + "frozen.") for key in state_dict)
        if saved_frozen and self.frozen is None:
            self.frozen = frozen_copy(self.network[0])
        elif not saved_frozen:
            self.frozen = None  # a phase-1 checkpoint (e.g. the best one) loaded after the switch
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def mix_batch(self, images: torch.Tensor, targets: torch.Tensor,
                  index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.batch_images = images  # the contrastive views and the frozen representations are made from it
        return images, targets

    def loss(self, per_sample: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
             model: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        images, self.batch_images = self.batch_images, None
        head = representation_head(self.network[0])
        if not self.calibrated:
            return self.contrastive_loss(images, model, head)
        features = head.features  # this batch's, from the forward that gave `logits`
        loss = per_sample + self.sampled_loss_weight * self.sampled_loss(head, features.dtype)
        if self.individual_weight > 0:
            with torch.no_grad():
                self.frozen(images)
            reference = representation_head(self.frozen).features
            loss = loss + self.individual_weight * (features.float() - reference.float()).pow(2).sum(dim=1)
        return loss

    def contrastive_loss(self, images: torch.Tensor, model: Callable[[torch.Tensor], torch.Tensor],
                         head: RepresentationHead) -> torch.Tensor:
        """Phase 1: the per-sample NT-Xent of two random views; the labels are not used."""
        padded, size = self.augment.prepare(images), tuple(images.shape[2:])
        projections = []
        for _ in range(2):
            model(self.augment(padded, size, self.device_generator(images.device)))
            projections.append(head.projector(head.features))
        return nt_xent(projections[0], projections[1], self.temperature).to(images.dtype)

    def device_generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(int(torch.randint(2 ** 62, (1,), generator=self.gen)))

    def sampled_loss(self, head: RepresentationHead, dtype: torch.dtype) -> torch.Tensor:
        """Cross-entropy of the head on representations drawn from the calibrated Gaussians."""
        points, labels = sample_representations(self.means, self.roots, self.sampled_classes, self.samples_per_class,
                                                self.device_generator(self.means.device))
        return F.cross_entropy(head.classifier(points.to(dtype)).float(), labels)

    def on_train_batch_end(self, model: nn.Module, progress) -> None:
        switch = count_or_fraction(self.representation_epochs, progress.max_epochs)
        if progress.epoch_finished and progress.epoch + 1 == switch and not self.calibrated:
            self.calibrate_from(self.network[0], progress.train_batches)

    @torch.no_grad()
    def calibrate_from(self, network: nn.Module, batches: Iterable) -> None:
        """The switch to phase 2: freeze a copy of the network, estimate and calibrate the class Gaussians."""
        features, labels, index = training_representations(network, batches)
        num_classes = len(self.train_counts)
        stats, kept = class_gaussians(features, labels, num_classes, self.lof_neighbors)
        tail = tail_classes(self.train_counts.cpu(), self.tail_count_fraction)
        stats = calibrate(stats, tail, self.calibration_neighbors, self.covariance_ridge)
        device = self.means.device
        present = torch.nonzero(stats.present).flatten()
        self.sampled_classes = present.to(device)
        self.means = stats.means.float().to(device)
        self.roots = covariance_roots(stats.covariances).float().to(device)
        self.trimmed_index = index[~kept].to(device)
        self.frozen = frozen_copy(network)

    def train_report(self, model: nn.Module, test_batches: Iterable, train_batches: Callable[[], Iterable],
                     is_noisy: torch.Tensor | None) -> dict[str, Any]:
        """What the LOF trimming removed, and (under label noise) how much of it was mislabeled, against the
        training set's corrupted fraction."""
        trimmed = self.trimmed_index.cpu()
        tail = tail_classes(self.train_counts.cpu(), self.tail_count_fraction)
        report: dict[str, Any] = {"trimmed": len(trimmed), "tail_classes": torch.nonzero(tail).flatten().tolist()}
        if is_noisy is not None:
            noisy = is_noisy.cpu()
            report["trimmed_noisy_fraction"] = float(noisy[trimmed].double().mean()) if len(trimmed) else None
            report["train_noisy_fraction"] = float(noisy.double().mean())
        return {"rcal": report}


def training_representations(network: nn.Module, batches: Iterable) -> tuple[torch.Tensor, torch.Tensor,
                                                                             torch.Tensor]:
    """The (N, D) representations (eval mode), labels and indices of the training images, each image once (an
    upsampled epoch may draw one twice), on the CPU."""
    head = representation_head(network)
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    features, labels, index = [], [], []
    try:
        for images, batch_labels, batch_index in batches:
            network(images.to(device))
            features.append(head.features.float().cpu())
            labels.append(batch_labels.cpu())
            index.append(batch_index.cpu())
    finally:
        network.train(was_training)
        head.features = None
    features, labels, index = torch.cat(features), torch.cat(labels), torch.cat(index)
    order = torch.argsort(index, stable=True)
    index, features, labels = index[order], features[order], labels[order]
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    return features[first], labels[first], index[first]


__all__ = ["RCAL", "RepresentationHead", "training_representations"]
