"""SMOTE (Chawla et al., 2002): neighbours, synthetic points on same-class segments, counts, seeds, and the
training split only; checked by hand and against imbalanced-learn's SMOTE where it is installed."""
import pytest
import torch
from data_configs import label_shift

from regbench.data.base import ImageData
from regbench.data.class_counts import minority_shortfall
from regbench.data.module import ImageDataModule
from regbench.data.smote import nearest_neighbours, smote_oversample, synthesize_class


def segment_step(point: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> float | None:
    """u with point = start + u (end - start), u in [0, 1], or None when the point is off that segment."""
    direction = (end - start).double()
    u = float(torch.dot(point.double() - start.double(), direction) / torch.dot(direction, direction))
    on_line = torch.allclose(start.double() + u * direction, point.double(), atol=1e-6)
    return u if on_line and -1e-9 <= u <= 1 + 1e-9 else None


def on_some_neighbour_segment(point: torch.Tensor, points: torch.Tensor, k: int) -> bool:
    neighbours = nearest_neighbours(points.double(), k)
    return any(segment_step(point, points[i], points[j]) is not None
               for i in range(len(points)) for j in neighbours[i].tolist())


def test_nearest_neighbours_by_hand():
    points = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    assert nearest_neighbours(points, 1).squeeze(1).tolist() == [1, 0, 1, 2]
    assert nearest_neighbours(points, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]


def test_nearest_neighbours_match_scikit_learn():
    neighbors = pytest.importorskip("sklearn.neighbors")
    points = torch.rand(40, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # scikit-learn counts each point as its own nearest neighbour: ask for k + 1 and drop it.
    expected = neighbors.NearestNeighbors(n_neighbors=6).fit(points.numpy()).kneighbors(points.numpy())[1][:, 1:]
    assert nearest_neighbours(points, 5).tolist() == expected.tolist()


def test_synthetic_points_interpolate_towards_a_nearest_neighbour():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    made = synthesize_class(points, 6, 1, torch.Generator().manual_seed(0))
    assert made.neighbour.tolist() == [[1, 0, 1, 2][b] for b in made.base.tolist()]
    # N% oversampling: 6 samples from 4 seeds, so each seeds one, and two of them (drawn) one more.
    assert sorted(torch.bincount(made.base, minlength=4).tolist()) == [1, 1, 2, 2]
    assert ((made.step >= 0) & (made.step < 1)).all()
    for sample, base, neighbour, step in zip(made.samples, made.base, made.neighbour, made.step):
        assert torch.allclose(sample, points[base] + step * (points[neighbour] - points[base]).double())
        assert segment_step(sample, points[base], points[neighbour]) == pytest.approx(float(step))


def uint8_images(per_class: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (len(labels), 1, 3, 3), generator=gen, dtype=torch.uint8), labels


def test_every_class_reaches_the_largest_and_the_real_images_come_first():
    images, labels = uint8_images([30, 12, 7])
    out_images, out_labels, added = smote_oversample(images, labels, 3, 3, torch.Generator().manual_seed(1))
    assert added == [0, 18, 23]
    assert torch.bincount(out_labels).tolist() == [30, 30, 30]
    assert out_images.dtype == torch.uint8 and torch.equal(out_images[:49], images)
    assert torch.equal(out_labels[:49], labels)
    # Class 1 is the first to be synthesized, from the same generator: its samples, rounded to grey levels.
    real = images[labels == 1].flatten(1)
    made = synthesize_class(real, 18, 3, torch.Generator().manual_seed(1))
    assert torch.equal(made.samples.round().to(torch.uint8), out_images[49:67].flatten(1))
    assert (out_labels[49:67] == 1).all() and (out_labels[67:] == 2).all()


def test_synthetic_samples_follow_the_seed():
    images, labels = uint8_images([20, 9])
    first = smote_oversample(images, labels, 2, 5, torch.Generator().manual_seed(4))[0]
    again = smote_oversample(images, labels, 2, 5, torch.Generator().manual_seed(4))[0]
    other = smote_oversample(images, labels, 2, 5, torch.Generator().manual_seed(5))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_class_with_at_most_k_images_cannot_be_oversampled():
    assert minority_shortfall([30, 12, 5], 5) == (2, 5)
    assert minority_shortfall([30, 12, 6], 5) is None
    assert minority_shortfall([1, 1], 1) is None  # balanced: nothing to synthesize
    assert minority_shortfall([4, 1], 1) == (1, 1)
    images, labels = uint8_images([30, 5])
    with pytest.raises(ValueError, match="class 1"):
        smote_oversample(images, labels, 2, 5, torch.Generator())


def test_agrees_with_imbalanced_learn():
    over_sampling = pytest.importorskip("imblearn.over_sampling")
    points = torch.rand(45, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    labels = torch.tensor([0] * 25 + [1] * 12 + [2] * 8)
    theirs, their_labels = over_sampling.SMOTE(k_neighbors=3, random_state=0).fit_resample(points.numpy(),
                                                                                           labels.numpy())
    ours, our_labels, _ = smote_oversample(points, labels, 3, 3, torch.Generator().manual_seed(0))
    assert torch.equal(torch.from_numpy(their_labels), our_labels)  # same counts, appended class by class
    assert not on_some_neighbour_segment(points[labels == 1].mean(0), points[labels == 1], 3)  # the check can fail
    for synthetic in (torch.from_numpy(theirs[45:]), ours[45:]):
        for point, c in zip(synthetic, our_labels[45:].tolist()):
            assert on_some_neighbour_segment(point, points[labels == c], 3)


def image_data(per_class: list[int]) -> ImageData:
    images, labels = uint8_images(per_class, seed=2)
    classes = [str(c) for c in range(len(per_class))]
    return ImageData(images, labels, images[:10], labels[:10], classes, (0.5,), (0.25,), hflip_ok=False)


def smote_module(balance_type: str, smote_seed: int = 0) -> ImageDataModule:
    sections = label_shift(imbalance={"type": "exponential", "factor": 8.0},
                           balance={"type": balance_type, "smote_k": 2, "seed": smote_seed})
    return ImageDataModule(image_data([40, 40, 40]), batch_size=8, val_fraction=0.25, split_seed=0, seed=0,
                           crop_padding=0, hflip=False, dataset="synthetic", **sections)


def test_the_datamodule_oversamples_the_training_split_only():
    plain, smote = smote_module("none"), smote_module("smote")
    n = plain.split_size("train")
    assert plain.imbalance_report["train_counts"] == [30, 10, 3]  # floor(30 * 8^(-c/2))
    assert smote.smote_report == {"k": 2, "added_per_class": [0, 20, 27], "train_counts": [30, 30, 30]}
    for split in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(plain.splits[split], smote.splits[split]))
    images, labels, positions = smote.splits["train"]
    assert torch.equal(images[:n], plain.splits["train"][0]) and torch.equal(labels[:n], plain.splits["train"][1])
    assert torch.equal(positions[:n], plain.splits["train"][2]) and (positions[n:] == -1).all()
    assert torch.equal(smote.clean_train_labels, labels) and smote.is_noisy is None
    assert torch.equal(images, smote_module("smote").splits["train"][0])
    assert not torch.equal(images, smote_module("smote", smote_seed=1).splits["train"][0])
