"""The training labels a run sees: the long-tailed subset of the training split, then label noise, clean labels kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from regbench.data.base import ImageData
from regbench.data.class_counts import profile_counts
from regbench.data.imbalance import select_per_class
from regbench.data.noise import corrupt_labels, noise_summary


@dataclass
class SplitLabels:
    train_idx: torch.Tensor  # positions in ImageData.train_x of the training images, after subsampling
    clean_train: torch.Tensor
    given_train: torch.Tensor  # what the model trains on: noisy where noise was applied
    val_idx: torch.Tensor
    given_val: torch.Tensor
    noise: dict[str, Any] | None  # metrics.json's `noise` section; None for clean runs
    imbalance: dict[str, Any] | None  # metrics.json's `imbalance` section; None for balanced runs


def build_split_labels(data: ImageData, train_idx: torch.Tensor, val_idx: torch.Tensor, dataset: str,
                       noise_cfg: Mapping[str, Any], imbalance_cfg: Mapping[str, Any]) -> SplitLabels:
    num_classes = data.num_classes
    imbalance = None
    if imbalance_cfg["type"] != "none":
        available = torch.bincount(data.train_y[train_idx], minlength=num_classes).tolist()
        counts = profile_counts(imbalance_cfg, available)
        gen = torch.Generator().manual_seed(imbalance_cfg["seed"])
        train_idx = train_idx[select_per_class(data.train_y[train_idx], counts, gen)]
        imbalance = {"type": imbalance_cfg["type"], "factor": float(imbalance_cfg["factor"]),
                     "train_counts": torch.bincount(data.train_y[train_idx], minlength=num_classes).tolist()}
    clean_train, clean_val = data.train_y[train_idx], data.train_y[val_idx]
    gen = torch.Generator().manual_seed(noise_cfg["seed"])
    given_train = corrupt_labels(clean_train, noise_cfg, dataset, num_classes, gen, train_idx, data.train_y)
    given_val = clean_val
    if noise_cfg["apply_to_val"]:
        given_val = corrupt_labels(clean_val, noise_cfg, dataset, num_classes, gen, val_idx, data.train_y)
    noise = None
    if noise_cfg["type"] != "none":
        noise = noise_summary(clean_train, given_train, noise_cfg, num_classes)
        if noise_cfg["apply_to_val"]:
            noise["val_realised_rate"] = float((clean_val != given_val).double().mean())
    return SplitLabels(train_idx, clean_train, given_train, val_idx, given_val, noise, imbalance)
