"""Held-out classes (`data.holdout_classes`): the classes listed are dropped from the training, validation and test
splits, the remaining K classes relabelled 0..K-1 in their order, and the held-out classes' test images kept aside
as an out-distribution set (eval.ood.datasets=[heldout]). The facts without them: facts.held_in_facts."""
from __future__ import annotations

import dataclasses

import torch

from regbench.data.base import ImageData
from regbench.data.facts import check_holdout_range


def hold_out_classes(data: ImageData, holdout: list[int]) -> ImageData:
    """The data without the held-out classes, labels remapped to 0..K-1, with the held-out classes' test images
    (in test-split order) as `held_out_test_x`."""
    if not holdout:
        return data
    check_holdout_range(holdout, data.num_classes)
    kept_classes = [c for c in range(data.num_classes) if c not in holdout]
    new_label = torch.full((data.num_classes,), -1, dtype=torch.long)
    new_label[kept_classes] = torch.arange(len(kept_classes))
    train_kept, test_kept = new_label[data.train_y] >= 0, new_label[data.test_y] >= 0
    return dataclasses.replace(
        data, train_x=data.train_x[train_kept], train_y=new_label[data.train_y[train_kept]],
        test_x=data.test_x[test_kept], test_y=new_label[data.test_y[test_kept]],
        classes=[data.classes[c] for c in kept_classes], held_out_test_x=data.test_x[~test_kept])
