"""Each dataset's static facts (image shape, training images per class) agree with what its loader returns, and a
run's planned shape (from the facts, before any data is loaded, without torch) with the shape of the loaded
datamodule."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_configs import dataset_config
from image_trees import write_class_folders

from regbench.data.class_counts import stratified_indices
from regbench.data.digits import read_sklearn_digits
from regbench.data.facts import DATASET_FACTS, dataset_facts, loader_params
from regbench.data.module import build_datamodule
from regbench.data.shape import loaded_run_shape, planned_run_shape
from regbench.data.split import stratified_split
from regbench.runshape import RunShape, batches_per_epoch
from regbench.specs.data import DATASETS

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
    facts = dataset_facts("digits", {**loader_params(dataset_config("digits")), **params}, None, 0)
    assert (facts.image_shape, list(facts.train_class_counts)) == facts_of_loaded("digits", params)


def test_digits_are_read_as_sklearn_loads_them():
    from sklearn.datasets import load_digits

    pixels, labels = read_sklearn_digits()
    bunch = load_digits()
    assert pixels.shape == (1797, 8, 8) and (pixels == bunch.images).all() and (labels == bunch.target).all()


@pytest.mark.parametrize("params", [{}, {"num_samples": 101, "num_classes": 7, "image_size": 5, "channels": 3},
                                    {"num_samples": 3, "num_classes": 5, "test_fraction": 0.5}])
def test_synthetic_facts_follow_its_parameters(params):
    facts = dataset_facts("synthetic", {**loader_params(dataset_config("synthetic")), **params}, None, 0)
    assert (facts.image_shape, list(facts.train_class_counts)) == facts_of_loaded("synthetic", params)


@pytest.mark.parametrize("name", sorted(ON_DISK))
def test_file_dataset_facts_match_the_real_files(name):
    if not (SHARED_DATA / ON_DISK[name]).exists():
        pytest.skip(f"no shared copy of {name} on this machine")
    facts = dataset_facts(name, {"cache": False}, None, 0)
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


# Run in a fresh interpreter: the test process has torch loaded already.
PLAN_WITHOUT_TORCH = """
import json, sys
from regbench.data.shape import check_crop_padding, planned_run_shape
shapes = {}
for name, cfg in json.loads(sys.argv[1]).items():
    shape = planned_run_shape(cfg, max_epochs=2, world_size=1)
    check_crop_padding(cfg["augment"]["crop_padding"], shape.image_shape)
    shapes[name] = [list(shape.image_shape), shape.train_images]
loaded = sorted(m for m in ("torch", "torchvision", "lightning", "sklearn") if m in sys.modules)
print(json.dumps({"shapes": shapes, "loaded": loaded}))
"""


def test_the_planned_run_shape_needs_no_torch(tmp_path):
    write_class_folders(tmp_path, 5)
    configs = {"digits": dataset_config("digits"), "synthetic": dataset_config("synthetic"),
               "image_folder": {**dataset_config("image_folder"), "root": str(tmp_path), "image_size": 8}}
    done = subprocess.run([sys.executable, "-c", PLAN_WITHOUT_TORCH, json.dumps(configs)], capture_output=True,
                          text=True, check=True)
    found = json.loads(done.stdout)
    assert found["loaded"] == []
    # Each class of 5 images keeps 4 after the test split and 4 - round(0.1 * 4) = 4 after the validation one.
    assert found["shapes"]["image_folder"] == [[3, 8, 8], 12]
    for name in ("digits", "synthetic"):
        planned = planned_run_shape(configs[name], max_epochs=2, world_size=1)
        assert found["shapes"][name] == [list(planned.image_shape), planned.train_images]


def test_the_tensor_split_is_the_numpy_split_and_draws_as_before():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0, 0, 2, 1, 1, 0])
    # Drawn by stratified_split when it computed the positions itself, with torch.
    assert [part.tolist() for part in stratified_indices(labels, 0.3, 7)] == [[0, 2, 3, 4, 5, 7, 8, 9, 11],
                                                                            [1, 6, 10, 12, 13]]
    assert [part.tolist() for part in stratified_indices(labels, 0.5, 0)] == [[0, 1, 3, 5, 7, 9, 11],
                                                                            [2, 4, 6, 8, 10, 12, 13]]
    many = np.random.default_rng(0).integers(0, 7, 500)
    for fraction, seed in ((0.2, 0), (0.35, 3), (0.0, 1)):
        kept, held = stratified_split(torch.from_numpy(many), fraction, seed)
        kept_np, held_np = stratified_indices(many, fraction, seed)
        assert kept.dtype == held.dtype == torch.int64
        assert kept.tolist() == kept_np.tolist() and held.tolist() == held_np.tolist()
