"""Reading an ingredient's checkpoint into the bare backbone (a wrapped head's keys mapped back, a differing shape
or a missing key refused in one line), and the soup's config: the settings its ingredients share."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from regbench.errors import UserError
from regbench.soups.cook import network_of, shared_config
from regbench.soups.ingredients import Ingredient

TARGET = {"features.0.weight": torch.zeros(4, 1, 3, 3), "head.weight": torch.zeros(10, 4),
          "head.bias": torch.zeros(10)}


def ingredient_with(tmp_path: Path, network: dict[str, torch.Tensor]) -> Ingredient:
    path = tmp_path / "last.ckpt"
    torch.save({"pytorch-lightning_version": "2", "state_dict": {f"model.{k}": v for k, v in network.items()}},
               path)
    return Ingredient(tmp_path, {}, {}, path)


def test_a_checkpoint_whose_head_a_regularizer_wrapped_reads_into_the_bare_backbone(tmp_path):
    # dropout's Sequential(Dropout, head) saves the classifier as head.1.
    network = {"features.0.weight": torch.ones(4, 1, 3, 3), "head.1.weight": torch.ones(10, 4),
               "head.1.bias": torch.ones(10)}
    state = network_of(ingredient_with(tmp_path, network), TARGET, None)
    assert sorted(state) == sorted(TARGET) and torch.equal(state["head.weight"], torch.ones(10, 4))


@pytest.mark.parametrize("network, message", [
    ({"features.0.weight": torch.ones(8, 1, 3, 3), "head.weight": torch.ones(10, 4), "head.bias": torch.ones(10)},
     "its network's features.0.weight with shape (8, 1, 3, 3), not (4, 1, 3, 3) does not fit"),
    ({"features.0.weight": torch.ones(4, 1, 3, 3), "head.weight": torch.ones(10, 4)},
     "its network lacks head.bias"),
    ({**{k: torch.ones_like(v) for k, v in TARGET.items()}, "features.9.weight": torch.ones(1)},
     "its network's features.9.weight does not fit"),
])
def test_a_network_of_another_architecture_is_refused_in_one_line(tmp_path, network, message):
    with pytest.raises(UserError) as caught:
        network_of(ingredient_with(tmp_path, network), TARGET, None)
    assert str(caught.value).startswith(f"run {str(tmp_path)!r} differs in architecture from the first ingredient: "
                                        f"{message}")


def test_an_unreadable_checkpoint_is_one_line(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"last.ckpt is unreadable \("):
        network_of(Ingredient(tmp_path, {}, {}, tmp_path / "last.ckpt"), TARGET, None)


def test_the_soups_config_keeps_what_its_ingredients_share_and_nulls_what_they_do_not():
    configs = [{"seed": 0, "run_dir": "a", "optim": {"lr": 0.01, "name": "sgd"}, "data": {"augment": {"hflip": 0}}},
               {"seed": 1, "run_dir": "b", "optim": {"lr": 0.003, "name": "sgd"}, "data": {"augment": {"hflip": 0}}}]
    shared, varied = shared_config(configs)
    assert shared == {"seed": 0, "run_dir": "a", "optim": {"lr": None, "name": "sgd"},
                      "data": {"augment": {"hflip": 0}}}
    assert varied == ["optim.lr"]
