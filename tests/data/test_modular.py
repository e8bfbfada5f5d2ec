"""data=modular: every one of the p^2 pairs once, one-hot inputs, correct answers, the train/test split sizes, the
facts the config checks read, and the corrupted share of the training labels through the label-noise machinery."""
from __future__ import annotations

import pytest
import torch

from regbench.data.facts import dataset_facts
from regbench.data.module import build_datamodule
from regbench.errors import UserError

from data_configs import dataset_config, load_dataset


def data_cfg(name: str, noise: dict | None = None, **changes) -> dict:
    cfg = {**dataset_config(name), **changes}
    cfg["noise"].update(noise or {})
    return cfg


def load(**params):
    return load_dataset("modular", root="data", download=False, split_seed=0, **params)


def decode(images: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, n) back from the uint8 (N, 1, 2, p) one-hot rows, checking that each row has exactly one 255."""
    rows = images[:, 0]
    assert set(rows.unique().tolist()) <= {0, 255}
    assert torch.equal((rows == 255).sum(dim=-1), torch.ones(len(rows), 2, dtype=torch.long))
    return rows[:, 0].argmax(-1), rows[:, 1].argmax(-1)


@pytest.mark.parametrize("operation", ["addition", "multiplication"])
def test_all_pairs_once_with_their_answers_and_the_split_sizes(operation):
    p, alpha = 11, 0.3
    data = load(modulus=p, operation=operation, train_fraction=alpha)
    assert len(data.train_y) == round(alpha * p * p) == 36 and len(data.test_y) == p * p - 36
    assert data.image_shape == (1, 2, p) and data.classes == [str(c) for c in range(p)]
    images, labels = torch.cat([data.train_x, data.test_x]), torch.cat([data.train_y, data.test_y])
    m, n = decode(images, p)
    assert sorted((m * p + n).tolist()) == list(range(p * p))  # every pair exactly once, none in both parts
    for a, b, y in zip(m.tolist(), n.tolist(), labels.tolist()):
        assert y == ((a + b) % p if operation == "addition" else (a * b) % p)
    assert (data.mean, data.std, data.hflip_ok) == ((0.0,), (1.0,), False)


def test_the_split_is_seeded_and_its_facts_match_the_loaded_data():
    params = dict(modulus=13, operation="addition", train_fraction=0.5)
    data = load(**params)
    assert torch.equal(load(**params).train_x, data.train_x)

    other = load_dataset("modular", root="data", download=False, split_seed=1, **params)
    assert not torch.equal(other.train_y, data.train_y)
    facts = dataset_facts("modular", params, None, split_seed=0)
    assert facts.image_shape == (1, 2, 13)
    assert list(facts.train_class_counts) == torch.bincount(data.train_y, minlength=13).tolist()


def test_the_network_sees_the_concatenated_one_hot_codes():
    cfg = data_cfg("modular", modulus=5, val_fraction=0.0)
    module = build_datamodule(cfg, seed=0)
    images, labels, _ = module.splits["train"]
    flat = module.normalize(images).flatten(1)
    m, n = decode(images, 5)
    expected = torch.cat([torch.eye(5)[m], torch.eye(5)[n]], dim=1)
    assert torch.equal(flat, expected)


def test_a_share_of_the_training_labels_is_corrupted_and_only_those():
    p, rate = 23, 0.35
    cfg = data_cfg("modular", modulus=p, noise={"type": "symmetric", "rate": rate, "convention": "uniform_other"})
    module = build_datamodule(cfg, seed=0)
    n_train = module.split_size("train")
    noisy = module.is_noisy
    # uniform_other moves round(rate * n_c) pairs of each class to another answer.
    assert abs(int(noisy.sum()) - rate * n_train) <= p
    assert torch.equal(noisy, module.splits["train"][1] != module.clean_train_labels)
    m, n = decode(module.splits["train"][0], p)
    assert torch.equal(module.clean_train_labels, (m + n) % p)
    assert module.noise_report["realised_rate"] == pytest.approx(float(noisy.double().mean()))
    # The test labels stay the true answers.
    tm, tn = decode(module.splits["test"][0], p)
    assert torch.equal(module.splits["test"][1], (tm + tn) % p)


@pytest.mark.parametrize("params, key", [
    ({"modulus": 1}, "modulus"), ({"modulus": 600}, "modulus"), ({"operation": "division"}, "operation"),
    ({"train_fraction": 0.0}, "train_fraction"), ({"train_fraction": 1.0}, "train_fraction"),
])
def test_bad_values_are_one_line(params, key):
    with pytest.raises(UserError, match=f"^data.{key}=") as err:
        load(**{"modulus": 7, **params})
    assert "\n" not in str(err.value)
