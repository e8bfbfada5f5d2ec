"""Label noise built the way the noisy-label papers build it. Pure, seeded functions: clean labels -> noisy labels.

Symmetric noise has three conventions in the literature, selectable here:
- uniform_all (ELR, Liu et al., 2020): exactly round(r*N) samples get a label drawn from all C classes, so
  about r/C of them keep their true label;
- uniform_other (Nested Dropout, Chen et al., 2022): exactly round(r*n_c) samples of each class c are moved to
  a different class, uniformly;
- transition (Co-teaching, Han et al., 2018): every label is redrawn from a matrix with 1-r on the diagonal and
  r/(C-1) elsewhere.
Asymmetric noise has two constructions:
- exact: exactly round(r*n_c) samples of each mapped source class, chosen by their clean label, move to its
  target class, so every source class has the rate r;
- elr: as ELR's code builds it (shengliu66/ELR). CIFAR-10: classes in increasing order, each moving ceil(r*n)
  of the samples that carry it at that moment, so cats relabelled dog can be chosen again among the dogs and
  return to cat (at r = 0.4 only ~24% of cats end up dogs, a realised rate ~0.184 instead of 0.2); CIFAR-100:
  a per-sample draw from the matrix with 1-r on the diagonal and r at the class map's target.
Pair-flip draws from the matrix with 1-r on the diagonal and r at (i, i+1 mod C) (Co-teaching).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from regbench.errors import UserError
from regbench.specs.label_shift import ELR_ASYMMETRIC, ELR_IN_PLACE, asymmetric_map



def symmetric_matrix(num_classes: int, rate: float) -> torch.Tensor:
    off = rate / (num_classes - 1) if num_classes > 1 else 0.0
    matrix = torch.full((num_classes, num_classes), off, dtype=torch.float64)
    matrix.fill_diagonal_(1.0 - rate if num_classes > 1 else 1.0)
    return matrix


def pairflip_matrix(num_classes: int, rate: float) -> torch.Tensor:
    matrix = torch.eye(num_classes, dtype=torch.float64) * (1.0 - rate)
    classes = torch.arange(num_classes)
    matrix[classes, (classes + 1) % num_classes] += rate
    return matrix


def draw_from_matrix(labels: torch.Tensor, matrix: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-sample draw: the noisy label of a sample of class i follows row i of the transition matrix."""
    return torch.multinomial(matrix[labels], 1, generator=gen).squeeze(1)


def flip_uniform_all(labels: torch.Tensor, rate: float, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    chosen = torch.randperm(len(labels), generator=gen)[: round(rate * len(labels))]
    noisy = labels.clone()
    noisy[chosen] = torch.randint(0, num_classes, (len(chosen),), generator=gen)
    return noisy


def _chosen_per_class(labels: torch.Tensor, rate: float, c: int, gen: torch.Generator) -> torch.Tensor:
    members = torch.nonzero(labels == c).squeeze(1)
    return members[torch.randperm(len(members), generator=gen)[: round(rate * len(members))]]


def flip_uniform_other(labels: torch.Tensor, rate: float, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    noisy = labels.clone()
    for c in range(num_classes):
        chosen = _chosen_per_class(labels, rate, c, gen)
        # An offset in 1..C-1 lands on every other class with equal probability and never on c.
        noisy[chosen] = (c + torch.randint(1, num_classes, (len(chosen),), generator=gen)) % num_classes
    return noisy


def flip_by_class_map(labels: torch.Tensor, rate: float, mapping: Mapping[int, int],
                      gen: torch.Generator) -> torch.Tensor:
    noisy = labels.clone()
    for source, target in sorted(mapping.items()):
        noisy[_chosen_per_class(labels, rate, source, gen)] = target  # chosen from the clean labels: no chains
    return noisy


def flip_in_place_by_class(labels: torch.Tensor, rate: float, mapping: Mapping[int, int],
                           gen: torch.Generator) -> torch.Tensor:
    """ELR's CIFAR-10 construction: source classes in increasing order, each moving ceil(r * n) of the n samples
    that carry it at that moment (ELR's `j < percent * len(indices)`), chains included."""
    noisy = labels.clone()
    for source in sorted(mapping):
        members = torch.nonzero(noisy == source).squeeze(1)
        count = math.ceil(rate * len(members))
        noisy[members[torch.randperm(len(members), generator=gen)[:count]]] = mapping[source]
    return noisy


def class_map_matrix(num_classes: int, rate: float, mapping: Mapping[int, int]) -> torch.Tensor:
    """1-r on the diagonal of each mapped source class and r at its target; unmapped classes stay."""
    matrix = torch.eye(num_classes, dtype=torch.float64)
    for source, target in mapping.items():
        matrix[source, source] = 1.0 - rate
        matrix[source, target] += rate
    return matrix


def flip_asymmetric(labels: torch.Tensor, rate: float, construction: str, dataset: str, num_classes: int,
                    gen: torch.Generator) -> torch.Tensor:
    mapping = asymmetric_map(dataset)
    if construction == "exact":
        return flip_by_class_map(labels, rate, mapping, gen)
    if ELR_ASYMMETRIC[dataset] == ELR_IN_PLACE:
        return flip_in_place_by_class(labels, rate, mapping, gen)
    return draw_from_matrix(labels, class_map_matrix(num_classes, rate, mapping), gen)


def _numpy_safe_globals() -> list:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct

    dtypes = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float32,
              np.float64)
    # A pickle names the function by the module that wrote it: numpy 1.x (the published CIFAR-N files, 2021)
    # wrote numpy.core.multiarray, numpy 2 writes numpy._core.multiarray. Allow both spellings.
    spellings = [(_reconstruct, f"{module}.multiarray._reconstruct") for module in ("numpy.core", "numpy._core")]
    return [_reconstruct, *spellings, np.ndarray, np.dtype, *(type(np.dtype(t)) for t in dtypes)]


def read_label_file(path: str, key: str) -> dict[str, torch.Tensor]:
    """A CIFAR-N file: a torch-saved dict of numpy label arrays, loaded without running arbitrary pickle code."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"data.noise.file={path!r} not found: expected a CIFAR-10N/CIFAR-100N .pt file at {file}")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            content = torch.load(file, map_location="cpu", weights_only=True)
        labels = {k: torch.as_tensor(np.asarray(v), dtype=torch.long).reshape(-1) for k, v in content.items()}
    except Exception as err:  # any unreadable content is the same user-facing problem
        raise UserError(f"data.noise.file={path!r} is not a readable CIFAR-N .pt file of label arrays "
                        f"({type(err).__name__})") from None
    if key not in labels:
        raise UserError(f"data.noise.key={key!r} is not in {file}; keys there: {', '.join(sorted(labels))}")
    return labels


def labels_from_file(labels: torch.Tensor, original_index: torch.Tensor, path: str, key: str,
                     full_train_labels: torch.Tensor) -> torch.Tensor:
    content = read_label_file(path, key)
    given = content[key]
    if len(given) != len(full_train_labels):
        raise UserError(f"data.noise.file={path!r}: key {key!r} holds {len(given)} labels but the training set has "
                        f"{len(full_train_labels)}; use the file made for this dataset")
    clean = content.get("clean_label")
    if clean is not None and not torch.equal(clean, full_train_labels):
        raise UserError(f"data.noise.file={path!r}: its clean_label disagrees with the training labels; use the "
                        f"file made for this dataset")
    return given[original_index]


def corrupt_labels(labels: torch.Tensor, cfg: Mapping[str, Any], dataset: str, num_classes: int,
                   gen: torch.Generator, original_index: torch.Tensor | None = None,
                   full_train_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The noisy version of `labels` (a new tensor); `original_index` locates them in a CIFAR-N file."""
    kind, rate = cfg["type"], float(cfg["rate"])
    if kind == "none":
        return labels.clone()
    if kind == "symmetric":
        if cfg["convention"] == "uniform_all":
            return flip_uniform_all(labels, rate, num_classes, gen)
        if cfg["convention"] == "uniform_other":
            return flip_uniform_other(labels, rate, num_classes, gen)
        return draw_from_matrix(labels, symmetric_matrix(num_classes, rate), gen)
    if kind == "asymmetric":
        return flip_asymmetric(labels, rate, cfg["construction"], dataset, num_classes, gen)
    if kind == "pairflip":
        return draw_from_matrix(labels, pairflip_matrix(num_classes, rate), gen)
    return labels_from_file(labels, original_index, cfg["file"], cfg["key"], full_train_labels)


def realised_transition(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Row i: the observed distribution of noisy labels among samples whose clean label is i."""
    counts = torch.bincount(clean * num_classes + noisy, minlength=num_classes ** 2).view(num_classes, num_classes)
    return counts.double() / counts.sum(dim=1, keepdim=True).clamp_min(1)


def noise_summary(clean: torch.Tensor, noisy: torch.Tensor, cfg: Mapping[str, Any], num_classes: int) -> dict:
    summary = {"type": cfg["type"], "convention": cfg["convention"] if cfg["type"] == "symmetric" else None,
               "construction": cfg["construction"] if cfg["type"] == "asymmetric" else None,
               "rate": float(cfg["rate"]), "realised_rate": float((clean != noisy).double().mean()),
               "transition_matrix": [[round(v, 6) for v in row] for row in realised_transition(clean, noisy,
                                                                                              num_classes).tolist()]}
    if cfg["type"] == "file":
        summary.update(file=cfg["file"], key=cfg["key"])
    return summary

