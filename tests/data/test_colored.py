"""The coloured datasets (a spurious colour, "Accuracy on the Curve", Liang et al., 2023): exact majority shares per
class, the painting, the facts, the refusal of bad settings, and per-group accuracy on a hand-computed case."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_configs import dataset_config, load_dataset
from test_data_loaders import write_tiny_idx

from regbench.run.cli import main as train_main
from regbench.data.colored import BINARY_CLASSES
from regbench.data.facts import dataset_facts, loader_params
from regbench.data.module import build_datamodule
from regbench.data.subpopulations import PALETTE, assign_colors, colorize, group_accuracy
from regbench.specs.data import DATASETS

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SPURIOUS = {"labels": "binary", "correlation": 0.9, "test_correlation": 0.5, "seed": 0}


def load(name: str, **spurious):
    return DATASETS.create(name, {"spurious": {**SPURIOUS, **spurious}}, root="unused", download=False, split_seed=0)


@pytest.mark.parametrize("correlation", [0.0, 0.37, 0.9, 1.0])
def test_each_class_has_exactly_round_correlation_n_majority_images(correlation):
    labels = torch.tensor([0] * 11 + [1] * 7 + [2] * 5)
    colors = assign_colors(labels, 3, correlation, np.random.default_rng(3))
    for y, n in ((0, 11), (1, 7), (2, 5)):
        members = colors[labels == y]
        assert int((members == y).sum()) == int(round(correlation * n))
        assert members.min() >= 0 and members.max() < 3
    again = assign_colors(labels, 3, correlation, np.random.default_rng(3))
    assert torch.equal(colors, again)  # seeded


def test_minority_colours_are_the_other_colours_uniformly():
    labels = torch.zeros(30000, dtype=torch.long)
    colors = assign_colors(labels, 4, 0.0, np.random.default_rng(0))
    shares = torch.bincount(colors, minlength=4).double() / len(colors)
    assert shares[0] == 0 and torch.allclose(shares[1:], torch.full((3,), 1 / 3, dtype=torch.double), atol=0.01)


def test_colorize_scales_each_pixel_by_its_images_colour():
    grey = torch.tensor([[[[200, 10]]], [[[255, 0]]]], dtype=torch.uint8)  # two 1x2 images
    painted = colorize(grey, torch.tensor([0, 6]))  # red; orange (255, 128, 0)
    assert painted.shape == (2, 3, 1, 2) and painted.dtype == torch.uint8
    assert painted[0, :, 0].tolist() == [[200, 10], [0, 0], [0, 0]]
    assert painted[1, :, 0].tolist() == [[255, 0], [round(255 * 128 / 255), 0], [0, 0]]
    assert PALETTE[6] == (255, 128, 0)


@pytest.mark.parametrize("correlation, seed", [(0.9, 0), (0.75, 5)])
def test_colored_digits_has_the_exact_training_share_and_the_test_share(correlation, seed):
    data = load("colored_digits", correlation=correlation, seed=seed)
    grey = load_dataset("digits", root="unused", download=False, split_seed=0)
    assert data.image_shape == (3, 8, 8) and data.classes == BINARY_CLASSES
    assert torch.equal(data.train_y, (grey.train_y >= 5).long())
    for y in (0, 1):
        n = int((data.train_y == y).sum())
        assert int(((data.train_colors == y) & (data.train_y == y)).sum()) == round(correlation * n)
        n_test = int((data.test_y == y).sum())
        assert int(((data.test_colors == y) & (data.test_y == y)).sum()) == round(0.5 * n_test)
    # Red images (colour 0) keep the grey intensity in the red channel only.
    red = data.train_colors == 0
    assert torch.equal(data.train_x[red][:, 0], grey.train_x[red][:, 0])
    assert data.train_x[red][:, 1:].max() == 0
    params = {**loader_params(dataset_config("colored_digits")), "spurious": {**SPURIOUS, "correlation": correlation}}
    assert dataset_facts("colored_digits", params, None, 0).train_class_counts \
        == tuple(torch.bincount(data.train_y).tolist())


def test_colored_digits_ten_classes_and_reversed_test_colours():
    data = load("colored_digits", labels="digit", correlation=1.0, test_correlation=0.0)
    assert data.num_classes == 10 and torch.equal(data.train_colors, data.train_y)
    assert not (data.test_colors == data.test_y).any()
    params = {**loader_params(dataset_config("colored_digits")), "spurious": {**SPURIOUS, "labels": "digit"}}
    facts = dataset_facts("colored_digits", params, None, 0)
    assert facts.image_shape == (3, 8, 8) and facts.train_class_counts == tuple(torch.bincount(data.train_y).tolist())


def test_colored_mnist_paints_the_mnist_files(tmp_path):
    write_tiny_idx(tmp_path, "MNIST")
    data = DATASETS.create("colored_mnist", {"spurious": {**SPURIOUS, "correlation": 0.5}, "cache": False},
                           root=str(tmp_path), download=False, split_seed=0)
    grey = DATASETS.create("mnist", {"cache": False}, root=str(tmp_path), download=False, split_seed=0)
    assert data.train_x.shape == (6, 3, 28, 28) and data.test_x.shape == (3, 3, 28, 28)
    assert torch.equal(data.train_y, (grey.train_y >= 5).long())
    for y in (0, 1):
        n = int((data.train_y == y).sum())
        assert int(((data.train_colors == y) & (data.train_y == y)).sum()) == round(0.5 * n)
    channel = data.train_colors  # binary: red (channel 0) or green (channel 1) holds the grey image
    assert torch.equal(data.train_x[torch.arange(6), channel], grey.train_x[:, 0])


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy on this machine")
@pytest.mark.parametrize("labels", ["binary", "digit"])
def test_colored_mnist_facts_match_the_real_files(labels):
    params = {"spurious": {**SPURIOUS, "labels": labels}, "cache": False}
    data = DATASETS.create("colored_mnist", params, root=str(SHARED_DATA), download=False, split_seed=0)
    facts = dataset_facts("colored_mnist", params, None, 0)
    assert facts.image_shape == data.image_shape == (3, 28, 28)
    assert facts.train_class_counts == tuple(torch.bincount(data.train_y).tolist())
    for y in range(data.num_classes):
        n = int((data.train_y == y).sum())
        assert int(((data.train_colors == y) & (data.train_y == y)).sum()) == round(0.9 * n)


def test_the_datamodule_exposes_clean_labels_and_colours_of_val_and_test():
    module = build_datamodule(dataset_config("colored_digits"), seed=0)
    data = load("colored_digits")
    test_labels, test_colors = module.spurious_groups["test"]
    assert torch.equal(test_labels, data.test_y) and torch.equal(test_colors, data.test_colors)
    val_labels, val_colors = module.spurious_groups["val"]
    assert torch.equal(val_labels, module.splits["val"][1]) and len(val_colors) == module.split_size("val")
    assert build_datamodule(dataset_config("digits"), seed=0).spurious_groups is None


def test_group_accuracy_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    colors = torch.tensor([0, 0, 1, 1, 1, 0])  # majority: positions 0, 1, 3, 4
    predictions = torch.tensor([0, 0, 1, 1, 0, 0])  # right at 0, 1, 3
    report = group_accuracy(predictions, labels, colors, num_classes=2)
    assert report["per_group"] == [{"label": 0, "color": 0, "count": 2, "acc": 1.0},
                                   {"label": 0, "color": 1, "count": 1, "acc": 0.0},
                                   {"label": 1, "color": 0, "count": 1, "acc": 0.0},
                                   {"label": 1, "color": 1, "count": 2, "acc": 0.5}]
    assert report["majority_acc"] == 0.75 and report["minority_acc"] == 0.0 and report["worst_group_acc"] == 0.0


def test_group_accuracy_without_a_minority():
    labels = torch.tensor([0, 1, 1])
    report = group_accuracy(torch.tensor([0, 1, 0]), labels, labels.clone(), num_classes=3)
    assert report["minority_acc"] is None and report["majority_acc"] == pytest.approx(2 / 3)
    assert report["worst_group_acc"] == 0.5 and len(report["per_group"]) == 2  # empty groups left out


@pytest.mark.parametrize("args, message", [
    (["data.spurious.correlation=1.5"],
     "data.spurious.correlation=1.5 is invalid: must be in [0, 1] (the share of each class in its own colour)"),
    (["data.spurious.correlation=-0.1"], "data.spurious.correlation=-0.1 is invalid: must be in [0, 1]"),
    (["data.spurious.test_correlation=2"], "data.spurious.test_correlation=2 is invalid: must be in [0, 1]"),
    (["data.spurious.labels=ternary"], "data.spurious.labels='ternary' is invalid: allowed: binary, digit"),
    (["data.spurious.seed=x"], "data.spurious.seed='x' is invalid: a seed must be an integer from 0 to 4294967295"),
])
def test_bad_spurious_settings_are_refused_in_one_line_before_a_run_dir(args, message, tmp_path: Path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    assert train_main(["data=colored_digits", *args, "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith(f"regbench train: error: {message}"), stderr
    assert list(tmp_path.iterdir()) == []
