"""Loaders, the stratified split and the in-memory batch pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_configs import dataset_config, load_dataset

from regbench.data import batches as batches_module
from regbench.data.batches import BatchAugment, TensorBatches, random_crop
from regbench.data.files import MNIST_FILES
from regbench.data.module import build_datamodule
from regbench.data.split import stratified_split
from regbench.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DIGITS = {**dataset_config("digits"), "augment": {"crop_padding": 1, "hflip": True, "random_resized_crop": False}}


def test_stratified_split_keeps_each_class_share_and_is_seeded():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = stratified_split(labels, 0.2, seed=1)
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(100))
    assert torch.bincount(labels[held]).tolist() == [10, 6, 4]
    assert torch.equal(held, stratified_split(labels, 0.2, seed=1)[1])
    assert not torch.equal(held, stratified_split(labels, 0.2, seed=2)[1])


def test_digits_splits_are_disjoint_and_never_flip():
    dm = build_datamodule(DIGITS, seed=0)
    sizes = {s: dm.split_size(s) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 359
    assert dm.image_shape == (1, 8, 8) and dm.num_classes == 10
    assert dm.augment.hflip is False  # digits are not mirror-symmetric whatever the config says
    train_idx, val_idx = dm.splits["train"][2], dm.splits["val"][2]
    assert not set(train_idx.tolist()) & set(val_idx.tolist())


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for key, name in MNIST_FILES.items():
        n = 12 if key.startswith("train") else 5
        write_idx(raw / name, rng.integers(0, 256, (n, 28, 28)) if key.endswith("x") else rng.integers(0, 10, n))
    data = load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0)
    assert data.train_x.shape == (12, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_y.shape == (5,)


def test_mnist_missing_or_corrupt_files_give_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="data.download=true"):
        load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES.values():
        (raw / name).write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a valid idx file"):
        load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="real MNIST not present")
def test_real_mnist_has_its_published_shape_and_mean():
    data = load_dataset("mnist", root=str(SHARED_DATA), download=False, split_seed=0)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_x.float().div(255).mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert torch.bincount(data.train_y).sum() == 60000


def test_batches_cover_every_sample_once_per_epoch_and_reshuffle_by_seed():
    labels = torch.arange(100)
    loader = TensorBatches(labels.float().view(100, 1, 1, 1), labels, 10, shuffle=True, seed=3)
    first = torch.cat([idx for _, _, idx in loader])
    assert sorted(first.tolist()) == list(range(100))
    loader.set_epoch(1)
    second = torch.cat([idx for _, _, idx in loader])
    assert not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(first, torch.cat([idx for _, _, idx in loader]))
    for images, batch_labels, index in loader:
        assert torch.equal(batch_labels, index) and torch.equal(images.view(-1).long(), index)


def test_batches_shard_disjointly_across_ranks(monkeypatch):
    labels = torch.arange(103)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(batches_module, "distributed_rank_and_size", lambda rank=rank: (rank, 2))
        loader = TensorBatches(labels.view(-1, 1, 1, 1).float(), labels, 8, shuffle=True, seed=0, drop_last=True)
        indices = torch.cat([idx for _, _, idx in loader])
        assert len(loader) == 6 and len(indices) == 48
        seen.append(set(indices.tolist()))
    assert not seen[0] & seen[1]


def test_random_crop_takes_the_window_at_each_sampled_offset():
    padded = torch.randn(4, 2, 10, 10)
    gen = torch.Generator().manual_seed(0)
    crops = random_crop(padded, (8, 8), gen)
    gen = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 3, (4,), generator=gen)
    dx = torch.randint(0, 3, (4,), generator=gen)
    for i in range(4):
        torch.testing.assert_close(crops[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8])


def test_augment_flips_about_half_and_keeps_shape():
    augment = BatchAugment(crop_padding=0, hflip=True)
    images = torch.randn(400, 1, 4, 4)
    out = augment(images, (4, 4), torch.Generator().manual_seed(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1) & ~(out == images).flatten(1).all(1)
    assert 150 < flipped.sum() < 250
