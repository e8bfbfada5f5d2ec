"""Modular arithmetic (Doshi, Das, He & Gromov, "To grok or not to grok", ICLR 2024, Sec. 1.1): all p^2 pairs
(m, n), each input the one-hot codes of m and n side by side, the label m + n (or m * n) mod p; a random alpha share
of the pairs trains, the rest is the test set. Label corruption is the data config's label noise."""
from __future__ import annotations

import torch

from regbench.data.base import ImageData
from regbench.data.facts import check_modular_params, modular_answers, modular_split
from regbench.specs.data import DATASETS


def all_pairs(modulus: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, n) for m, n in 0..p-1, m major: pair i is (i // p, i % p)."""
    index = torch.arange(modulus * modulus)
    return index // modulus, index % modulus


def one_hot_pairs(m: torch.Tensor, n: torch.Tensor, modulus: int) -> torch.Tensor:
    """uint8 (N, 1, 2, p) 'images': row 0 is e_m, row 1 is e_n (255 = 1.0 after the [0, 1] scaling); flattened,
    the network sees e_m (+) e_n, the paper's 2p-dimensional input."""
    rows = torch.stack([m, n], dim=1)
    images = torch.zeros(len(m), 2, modulus, dtype=torch.uint8)
    images.scatter_(2, rows[:, :, None], 255)
    return images[:, None]


@DATASETS.register("modular")
def load_modular(*, root: str, download: bool, split_seed: int, modulus: int, operation: str,
                 train_fraction: float) -> ImageData:
    check_modular_params(modulus, operation, train_fraction)
    m, n = all_pairs(modulus)
    images, labels = one_hot_pairs(m, n, modulus), modular_answers(m, n, modulus, operation)
    train_idx, test_idx = map(torch.from_numpy, modular_split(modulus, train_fraction, split_seed))
    # Mean 0 and std 1 keep the normalized inputs exactly one-hot.
    return ImageData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                     classes=[str(c) for c in range(modulus)], mean=(0.0,), std=(1.0,), hflip_ok=False)
