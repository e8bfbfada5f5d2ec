"""Each dataset's static facts (image shape, training images per class) agree with what its loader returns, and a
run's planned shape (from the facts, before any data is loaded) with the shape of the loaded datamodule."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_configs import dataset_config

from regbench.data import DATASETS, build_datamodule
from regbench.data.digits import read_sklearn_digits
from regbench.data.registry import DATASET_FACTS, dataset_facts
from regbench.data.shape import loaded_run_shape, planned_run_shape
from regbench.runshape import RunShape, batches_per_epoch

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
# Where each file-based dataset keeps its files under data.root.
ON_DISK = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py",
           "cifar100": "cifar-100-python", "svhn": "train_32x32.mat"}


def data_config(name: str, **changes) -> dict:
    data = dataset_config(name)
    for key, value in changes.items():
        section, _, leaf = key.partition(".")
        if leaf:
            data[section][leaf] = value
        else:
            data[key] = value
    return data


def facts_of_loaded(name: str, params: dict, root: str = "unused") -> tuple[tuple[int, ...], list[int]]:
    data = DATASETS.create(name, params, root=root, download=False, split_seed=0)
    return data.image_shape, torch.bincount(data.train_y, minlength=data.num_classes).tolist()


def test_every_dataset_states_its_facts():
    assert sorted(DATASET_FACTS) == DATASETS.names()


@pytest.mark.parametrize("params", [{}, {"test_fraction": 0.5}, {"test_fraction": 0.0}])
def test_digits_facts_match_the_loaded_data(params):
    facts = dataset_facts("digits", params)
    assert (facts.image_shape, list(facts.train_class_counts)) == facts_of_loaded("digits", params)


def test_digits_are_read_as_sklearn_loads_them():
    from sklearn.datasets import load_digits

    pixels, labels = read_sklearn_digits()
    bunch = load_digits()
    assert pixels.shape == (1797, 8, 8) and (pixels == bunch.images).all() and (labels == bunch.target).all()


@pytest.mark.parametrize("params", [{}, {"num_samples": 101, "num_classes": 7, "image_size": 5, "channels": 3},
                                    {"num_samples": 3, "num_classes": 5, "test_fraction": 0.5}])
def test_synthetic_facts_follow_its_parameters(params):
    facts = dataset_facts("synthetic", params)
    assert (facts.image_shape, list(facts.train_class_counts)) == facts_of_loaded("synthetic", params)


@pytest.mark.parametrize("name", sorted(ON_DISK))
def test_file_dataset_facts_match_the_real_files(name):
    if not (SHARED_DATA / ON_DISK[name]).exists():
        pytest.skip(f"no shared copy of {name} on this machine")
    facts = dataset_facts(name, {"cache": False})
    assert (facts.image_shape, list(facts.train_class_counts)) == facts_of_loaded(name, {"cache": False},
                                                                                   str(SHARED_DATA))


@pytest.mark.parametrize("name,changes", [
    ("digits", {}),
    ("digits", {"val_fraction": 0.35, "batch_size": 50, "test_fraction": 0.1}),
    ("digits", {"imbalance.type": "exponential", "imbalance.factor": 10.0, "batch_size": 16}),
    ("digits", {"imbalance.type": "step", "imbalance.factor": 4.0, "imbalance.minority_fraction": 0.3}),
    ("synthetic", {"num_samples": 257, "num_classes": 3, "val_fraction": 0.2, "batch_size": 7}),
    ("modular", {"modulus": 13, "train_fraction": 0.4, "batch_size": 16}),
    ("colored_digits", {"spurious.labels": "digit", "val_fraction": 0.2, "test_fraction": 0.3}),
    ("colored_digits", {"imbalance.type": "exponential", "imbalance.factor": 5.0, "batch_size": 16}),
])
@pytest.mark.parametrize("world_size", [1, 3])
def test_planned_run_shape_is_the_loaded_one(name, changes, world_size):
    cfg = data_config(name, **changes)
    planned = planned_run_shape(cfg, max_epochs=4, world_size=world_size)
    datamodule = build_datamodule(cfg, seed=0)
    assert planned == loaded_run_shape(datamodule, max_epochs=4, world_size=world_size)
    if world_size == 1:
        datamodule.setup()
        assert planned.steps_per_epoch == len(datamodule.train_dataloader())


def test_run_shape_counts_full_batches_of_each_ranks_shard():
    # 1000 images on 3 ranks: 999 shuffled into shards of 333, each cut into 10 full batches of 32.
    assert RunShape((1, 8, 8), 1000, 32, 3, 5).steps_per_epoch == 10
    assert RunShape((1, 8, 8), 1000, 32, 3, 5).total_steps == 50
    assert batches_per_epoch(1000, 32, 1, shuffle=True, drop_last=True) == 31
    assert batches_per_epoch(1000, 32, 3, shuffle=False, drop_last=False) == 11  # ordered shards of 334
    assert RunShape((3, 32, 28), 1000, 32, 1, 5).image_side == 28
