"""Modular arithmetic (Doshi, Das, He & Gromov, "To grok or not to grok", ICLR 2024, Sec. 1.1): all p^2 pairs
(m, n), each input the one-hot codes of m and n side by side, the label m + n (or m * n) mod p; a random alpha share
of the pairs trains, the rest is the test set. Label corruption is the data config's label noise."""
from __future__ import annotations

import numpy as np
import torch

from regbench.data.base import DatasetFacts, ImageData
from regbench.data.registry import register_dataset
from regbench.errors import check, check_positive_int

OPERATIONS = ("addition", "multiplication")
# p^2 inputs of 2p bytes each stay in memory: p = 512 is 0.5 GB.
MAX_MODULUS = 512


def check_modular_params(modulus: int, operation: str, train_fraction: float) -> None:
    check_positive_int("modulus", modulus)
    check(2 <= modulus <= MAX_MODULUS, "modulus", modulus, f"must be from 2 to {MAX_MODULUS}")
    check(operation in OPERATIONS, "operation", operation, f"allowed: {', '.join(OPERATIONS)}")
    pairs = modulus * modulus
    check(isinstance(train_fraction, (int, float)) and not isinstance(train_fraction, bool)
          and 0 < round(train_fraction * pairs) < pairs, "train_fraction", train_fraction,
          f"must leave both the training and the test set at least one of the {pairs} pairs")


def all_pairs(modulus: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, n) for m, n in 0..p-1, m major: pair i is (i // p, i % p)."""
    index = torch.arange(modulus * modulus)
    return index // modulus, index % modulus


def answers(m: torch.Tensor, n: torch.Tensor, modulus: int, operation: str) -> torch.Tensor:
    return (m + n) % modulus if operation == "addition" else (m * n) % modulus


def one_hot_pairs(m: torch.Tensor, n: torch.Tensor, modulus: int) -> torch.Tensor:
    """uint8 (N, 1, 2, p) 'images': row 0 is e_m, row 1 is e_n (255 = 1.0 after the [0, 1] scaling); flattened,
    the network sees e_m (+) e_n, the paper's 2p-dimensional input."""
    rows = torch.stack([m, n], dim=1)
    images = torch.zeros(len(m), 2, modulus, dtype=torch.uint8)
    images.scatter_(2, rows[:, :, None], 255)
    return images[:, None]


def train_test_split(modulus: int, train_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random round(alpha p^2) of the pair indices trains, the others test (the paper's random pick)."""
    pairs = modulus * modulus
    order = torch.from_numpy(np.random.default_rng(split_seed).permutation(pairs))
    n_train = round(train_fraction * pairs)
    return order[:n_train].sort().values, order[n_train:].sort().values


def modular_facts(*, modulus: int, operation: str, train_fraction: float, split_seed: int, **_) -> DatasetFacts:
    check_modular_params(modulus, operation, train_fraction)
    m, n = all_pairs(modulus)
    train_idx, _ = train_test_split(modulus, train_fraction, split_seed)
    labels = answers(m[train_idx], n[train_idx], modulus, operation)
    return DatasetFacts((1, 2, modulus), tuple(torch.bincount(labels, minlength=modulus).tolist()))


@register_dataset("modular", facts=modular_facts)
def load_modular(*, root: str, download: bool, split_seed: int, modulus: int = 97, operation: str = "addition",
                 train_fraction: float = 0.5) -> ImageData:
    check_modular_params(modulus, operation, train_fraction)
    m, n = all_pairs(modulus)
    images, labels = one_hot_pairs(m, n, modulus), answers(m, n, modulus, operation)
    train_idx, test_idx = train_test_split(modulus, train_fraction, split_seed)
    # Mean 0 and std 1 keep the normalized inputs exactly one-hot.
    return ImageData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                     classes=[str(c) for c in range(modulus)], mean=(0.0,), std=(1.0,), hflip_ok=False)
