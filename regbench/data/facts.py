"""What each dataset holds, known without loading it: the image shape and the training (and given validation)
images per class, from the loader's parameters as the data config gives them. No torch, so a run's shape (and
every setting that depends on it) is checked before torch loads; a test checks every entry against its loader."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from regbench.data.class_counts import kept_counts
from regbench.data.folder import FolderListing, images_channels, list_image_folder, list_imagenet, list_tiny_imagenet
from regbench.errors import UserError, check, check_fraction, check_non_negative, check_positive_int
from regbench.specs.data import DATASETS

# Keys every data config has; the rest are the dataset loader's own parameters.
COMMON_KEYS = ("name", "root", "download", "batch_size", "val_fraction", "split_seed", "augment", "noise",
               "imbalance", "balance", "prune", "sampler", "rs2", "crafted_val", "holdout_classes")
# Keys of the folder datasets' configs that choose where their images live (see storage.py), not loader parameters.
STORAGE_KEYS = ("storage", "max_memory_gb", "num_workers")


@dataclass(frozen=True)
class DatasetFacts:
    """What a loader will return, known without loading it (DATASET_FACTS), so a run's shape is checked before
    any data is read."""

    image_shape: tuple[int, int, int]  # (C, H, W)
    train_class_counts: tuple[int, ...]  # training images of each class, in label order
    # Validation images of each class when the dataset gives its validation split (then not drawn from training).
    val_class_counts: tuple[int, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.train_class_counts)


# Training images per class (60,000 in all) of the published files.
MNIST_FACTS = DatasetFacts((1, 28, 28), (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949))
FASHION_FACTS = DatasetFacts((1, 28, 28), (6000,) * 10)
CIFAR10_FACTS = DatasetFacts((3, 32, 32), (5000,) * 10)
CIFAR100_FACTS = DatasetFacts((3, 32, 32), (500,) * 100)
# Training images per digit 0..9 (73,257 in all; the files' label 10 is the digit 0).
SVHN_FACTS = DatasetFacts((3, 32, 32), (4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659))
DIGITS_SHAPE = (1, 8, 8)
# scikit-learn's digits: images per digit 0..9 (1797 in all), before the test split.
DIGITS_CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)
# The coloured datasets' spurious.labels=binary: digits 0-4 are class 0, 5-9 class 1.
FIRST_HIGH_DIGIT = 5
MODULAR_OPERATIONS = ("addition", "multiplication")
# p^2 inputs of 2p bytes each stay in memory: p = 512 is 0.5 GB.
MAX_MODULUS = 512


def loader_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset loader's own parameters: the data config minus the keys every dataset has."""
    return {k: v for k, v in cfg.items() if k not in COMMON_KEYS + STORAGE_KEYS}


def check_holdout_range(holdout: list[int], num_classes: int) -> None:
    """A ParamError (key relative to `data`) unless every held-out class exists and at least one class is left."""
    check(all(c < num_classes for c in holdout), "holdout_classes", holdout,
          f"the dataset's classes are 0..{num_classes - 1}")
    check(len(holdout) < num_classes, "holdout_classes", holdout,
          f"must leave at least one of the {num_classes} classes to train on")


def held_in_facts(facts: DatasetFacts, holdout: list[int]) -> DatasetFacts:
    """The facts of the dataset without its held-out classes (data.holdout_classes, see holdout.py)."""
    if not holdout:
        return facts
    check_holdout_range(holdout, facts.num_classes)

    def kept(counts: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if counts is None else tuple(n for c, n in enumerate(counts) if c not in holdout)

    return DatasetFacts(facts.image_shape, kept(facts.train_class_counts), kept(facts.val_class_counts))


def fixed_facts(facts: DatasetFacts) -> Callable[..., DatasetFacts]:
    """Facts of a dataset whose loader parameters do not change its images (the file-based ones)."""
    return lambda **_: facts


def digits_facts(*, test_fraction: float, **_) -> DatasetFacts:
    check_fraction("test_fraction", test_fraction)
    return DatasetFacts(DIGITS_SHAPE, kept_counts(DIGITS_CLASS_COUNTS, test_fraction))


def colored_counts(digit_counts: tuple[int, ...], labels: str) -> tuple[int, ...]:
    """Training images per class of the coloured task, from the images per digit."""
    if labels == "digit":
        return tuple(digit_counts)
    return sum(digit_counts[:FIRST_HIGH_DIGIT]), sum(digit_counts[FIRST_HIGH_DIGIT:])


def colored_digits_facts(*, spurious: Mapping[str, Any], test_fraction: float, **_) -> DatasetFacts:
    check_fraction("test_fraction", test_fraction)
    return DatasetFacts((3, 8, 8), colored_counts(kept_counts(DIGITS_CLASS_COUNTS, test_fraction), spurious["labels"]))


def colored_mnist_facts(*, spurious: Mapping[str, Any], **_) -> DatasetFacts:
    return DatasetFacts((3, 28, 28), colored_counts(MNIST_FACTS.train_class_counts, spurious["labels"]))


def check_modular_params(modulus: int, operation: str, train_fraction: float) -> None:
    check_positive_int("modulus", modulus)
    check(2 <= modulus <= MAX_MODULUS, "modulus", modulus, f"must be from 2 to {MAX_MODULUS}")
    check(operation in MODULAR_OPERATIONS, "operation", operation, f"allowed: {', '.join(MODULAR_OPERATIONS)}")
    pairs = modulus * modulus
    check(isinstance(train_fraction, (int, float)) and not isinstance(train_fraction, bool)
          and 0 < round(train_fraction * pairs) < pairs, "train_fraction", train_fraction,
          f"must leave both the training and the test set at least one of the {pairs} pairs")


def modular_split(modulus: int, train_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) pair indices, pair i being (i // p, i % p): a seeded random round(alpha p^2) of them
    trains, the others test (the paper's random pick)."""
    pairs = modulus * modulus
    order = np.random.default_rng(split_seed).permutation(pairs)
    n_train = round(train_fraction * pairs)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def modular_answers(m, n, modulus: int, operation: str):
    """The labels of pairs (m, n): arrays or tensors alike."""
    return (m + n) % modulus if operation == "addition" else (m * n) % modulus


def modular_facts(*, modulus: int, operation: str, train_fraction: float, split_seed: int, **_) -> DatasetFacts:
    check_modular_params(modulus, operation, train_fraction)
    train_idx, _ = modular_split(modulus, train_fraction, split_seed)
    labels = modular_answers(train_idx // modulus, train_idx % modulus, modulus, operation)
    return DatasetFacts((1, 2, modulus), tuple(np.bincount(labels, minlength=modulus).tolist()))


def check_synthetic_params(num_samples: int, num_classes: int, image_size: int, channels: int, noise_std: float,
                           test_fraction: float) -> None:
    for key, value in (("num_samples", num_samples), ("num_classes", num_classes), ("image_size", image_size),
                       ("channels", channels)):
        check_positive_int(key, value)
    check_non_negative("noise_std", noise_std)
    check_fraction("test_fraction", test_fraction)


def synthetic_facts(*, num_samples: int, num_classes: int, image_size: int, channels: int, noise_std: float,
                    test_fraction: float, **_) -> DatasetFacts:
    check_synthetic_params(num_samples, num_classes, image_size, channels, noise_std, test_fraction)
    # The loader labels sample i with class i mod C.
    class_counts = tuple(num_samples // num_classes + (c < num_samples % num_classes) for c in range(num_classes))
    return DatasetFacts((channels, image_size, image_size), kept_counts(class_counts, test_fraction))


def check_decoding_params(image_size, channels, crop_fraction, mean, std, cache) -> None:
    """The folder datasets' decoding parameters; ParamErrors with keys relative to `data`."""
    check_positive_int("image_size", image_size)
    check(channels in (None, 1, 3) and not isinstance(channels, bool), "channels", channels,
          "allowed: 1 (grayscale), 3 (RGB), or null (from the images, which must then share one mode)")
    check(isinstance(crop_fraction, (int, float)) and not isinstance(crop_fraction, bool) and 0 < crop_fraction <= 1,
          "crop_fraction", crop_fraction, "must be a number in (0, 1] (0.875: resize to 256, centre-crop 224)")
    check(isinstance(cache, bool), "cache", cache, "must be true or false")
    for key, values in (("mean", mean), ("std", std)):
        check(values is None or (isinstance(values, (list, tuple)) and len(values) > 0
                                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)),
              key, values, "must be null (computed from the training images) or a list with one number per channel")
    check((mean is None) == (std is None), "mean", mean, "give both data.mean and data.std, or neither")
    if std is not None:
        check(all(v > 0 for v in std), "std", std, "must be > 0 for every channel")
    if mean is not None and channels is not None:
        check(len(mean) == channels and len(std) == channels, "mean", mean,
              f"must have {channels} values (data.channels={channels}), like data.std")


def listing_args(root, test_fraction, split_seed) -> dict[str, Any]:
    if test_fraction is None:
        return {"root": str(root)}
    check_fraction("test_fraction", test_fraction)
    return {"root": str(root), "test_fraction": test_fraction, "split_seed": split_seed}


def folder_facts(list_folder: Callable[..., FolderListing]) -> Callable[..., DatasetFacts]:
    """Facts from the folder's listing (no image decoded); `test_fraction` only for the layout that draws its test
    split (image_folder)."""
    def facts(*, root: str, split_seed: int, image_size: int, channels: int | None, crop_fraction: float, mean, std,
              cache: bool, test_fraction: float | None = None, **_) -> DatasetFacts:
        check_decoding_params(image_size, channels, crop_fraction, mean, std, cache)
        if root is None:
            raise UserError("data.root is not set: name the image folder, data=image_folder data.root=DIR")
        listing = list_folder(**listing_args(root, test_fraction, split_seed))
        channels = images_channels(listing, channels, every_file=False)
        return DatasetFacts((channels, image_size, image_size), listing.class_counts(listing.train),
                            listing.class_counts(listing.val) if listing.val is not None else None)
    return facts


# name -> facts(**loader params, root, split_seed): one per DATASETS entry.
DATASET_FACTS: dict[str, Callable[..., DatasetFacts]] = {
    "cifar10": fixed_facts(CIFAR10_FACTS),
    "cifar100": fixed_facts(CIFAR100_FACTS),
    "colored_digits": colored_digits_facts,
    "colored_mnist": colored_mnist_facts,
    "digits": digits_facts,
    "fashion_mnist": fixed_facts(FASHION_FACTS),
    "image_folder": folder_facts(list_image_folder),
    "imagenet": folder_facts(list_imagenet),
    "mnist": fixed_facts(MNIST_FACTS),
    "modular": modular_facts,
    "svhn": fixed_facts(SVHN_FACTS),
    "synthetic": synthetic_facts,
    "tiny_imagenet": folder_facts(list_tiny_imagenet),
}


def dataset_facts(name: str, params: Mapping[str, Any], root: str | None, split_seed: int) -> DatasetFacts:
    """The facts of dataset `name` for its loader `params`, all of them as the data config gives them (their
    defaults live in conf/data/, not read from the loader, whose module imports torch). The folder datasets read
    their listing under `root` (a test split drawn with `split_seed`)."""
    DATASETS.entry(name)  # an unknown name: the registry's one-line error listing the known ones
    return DATASET_FACTS[name](**{**params, "root": root, "split_seed": split_seed})
