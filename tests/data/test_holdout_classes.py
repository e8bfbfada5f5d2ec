"""data.holdout_classes: the held-out classes leave every split, the rest are relabelled 0..K-1 in order, the
dataset's facts agree with what is loaded, and eval.ood.datasets=[heldout] is exactly the held-out test images."""
from __future__ import annotations

import pytest
import torch
from data_configs import dataset_config

from regbench.data.base import ImageData
from regbench.data.facts import DatasetFacts, held_in_facts
from regbench.data.holdout import hold_out_classes
from regbench.data.module import build_datamodule, load_images
from regbench.data.shape import training_class_counts
from regbench.errors import ParamError
from regbench.evaluation.ood_data import ood_images


def tiny_data() -> ImageData:
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1)
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    return ImageData(images, labels, images + 100, labels.flip(0), classes=["a", "b", "c", "d"], mean=(0.5,),
                     std=(0.5,), hflip_ok=False)


def test_held_out_classes_leave_and_the_rest_are_relabelled_in_order():
    data = hold_out_classes(tiny_data(), [1, 3])
    assert data.classes == ["a", "c"]
    assert data.train_x.flatten().tolist() == [0, 2, 5, 7] and data.train_y.tolist() == [0, 1, 1, 0]
    # test labels are 0, 1, 2, 3, 3, 2, 1, 0 flipped; images 100..107
    assert data.test_x.flatten().tolist() == [100, 102, 105, 107] and data.test_y.tolist() == [0, 1, 1, 0]
    assert data.held_out_test_x.flatten().tolist() == [101, 103, 104, 106]
    unchanged = tiny_data()
    assert hold_out_classes(unchanged, []) is unchanged and unchanged.held_out_test_x is None


def test_held_in_facts_drop_the_held_out_counts():
    facts = DatasetFacts((1, 8, 8), (10, 11, 12, 13), (1, 2, 3, 4))
    assert held_in_facts(facts, [0, 2]) == DatasetFacts((1, 8, 8), (11, 13), (2, 4))
    assert held_in_facts(facts, []) is facts
    with pytest.raises(ParamError, match=r"holdout_classes=\[4\] is invalid: the dataset's classes are 0..3"):
        held_in_facts(facts, [4])
    with pytest.raises(ParamError, match="must leave at least one of the 4 classes"):
        held_in_facts(facts, [0, 1, 2, 3])


@pytest.mark.parametrize("holdout", [[8, 9], [0, 5]])
def test_digits_without_held_out_classes(holdout):
    cfg = {**dataset_config("digits"), "holdout_classes": holdout}
    raw = load_images({**cfg, "holdout_classes": []})
    datamodule = build_datamodule(cfg, seed=0)
    kept = [c for c in range(10) if c not in holdout]
    relabel = {old: new for new, old in enumerate(kept)}
    assert datamodule.num_classes == 8 and datamodule.classes == [str(c) for c in kept]
    in_test = torch.isin(raw.test_y, torch.tensor(kept))
    test_images, test_labels, _ = datamodule.splits["test"]
    assert torch.equal(test_images, raw.test_x[in_test])
    assert test_labels.tolist() == [relabel[label] for label in raw.test_y[in_test].tolist()]
    assert torch.equal(datamodule.held_out_test_images, raw.test_x[~in_test])
    train_labels = torch.cat([datamodule.splits["train"][1], datamodule.splits["val"][1]])
    assert set(train_labels.tolist()) == set(range(8))  # no held-out label; every kept class present
    assert len(train_labels) == int(torch.isin(raw.train_y, torch.tensor(kept)).sum())
    # the facts the config checks read agree with what is loaded
    assert training_class_counts(cfg)[1] == torch.bincount(datamodule.splits["train"][1], minlength=8).tolist()


def test_the_heldout_ood_set_is_the_held_out_test_images_normalized():
    cfg = {**dataset_config("digits"), "holdout_classes": [8, 9]}
    datamodule = build_datamodule(cfg, seed=0)
    images = ood_images("heldout", cfg, datamodule, max_images=10000, seed=0)
    assert torch.allclose(images, datamodule.normalize(datamodule.held_out_test_images))
    assert len(images) == len(datamodule.held_out_test_images) > 0
