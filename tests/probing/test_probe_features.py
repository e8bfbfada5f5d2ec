"""A source run's penultimate features on the target (regbench.probing.features): the target's images fitted to the
runs' input shape (channels repeated, resized), the run's network rebuilt and loaded from its checkpoint without its
head, its features cached per run, checkpoint and target; one line for shapes that cannot be matched."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import initialize_config_module

from regbench.backbones import build_backbone
from regbench.compare.runs import RunRecord
from regbench.errors import UserError
from regbench.init.source import run_dir_source
from regbench.probing import features as probing_features
from regbench.probing.features import (check_target_shape, common_input_shape, fitted_images, load_network,
                                       run_features)
from regbench.probing.plan import ProbeRun, target_data_config
from regbench.sweeps.preflight import compose_checked


def run_config(*overrides: str) -> dict:
    with initialize_config_module("regbench.conf", version_base="1.3"):
        return compose_checked(["backbone.widths=[4,8]", *overrides])[0]


def saved_run(run_dir: Path, cfg: dict, seed: int = 0) -> ProbeRun:
    """A run directory whose best checkpoint holds a freshly initialized network, under a dropout-wrapped head's
    keys as Lightning saves them."""
    torch.manual_seed(seed)
    network = build_backbone(cfg["backbone"], cfg["norm"], (1, 8, 8), 10)
    state = {f"model.{key.replace('head.', 'head.1.')}": value for key, value in network.state_dict().items()}
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    torch.save({"pytorch-lightning_version": "2", "state_dict": state}, run_dir / "checkpoints" / "best.ckpt")
    record = RunRecord(str(run_dir), seed, cfg, {}, {}, {})
    return ProbeRun(record, run_dir_source(str(run_dir), run_dir, "best")), network


class FakeDataModule:
    def __init__(self, images: torch.Tensor):
        self.splits = {"train": (images, torch.zeros(len(images), dtype=torch.long), None)}

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255


def test_one_channel_images_are_repeated_and_resized_to_the_runs_shape():
    images = torch.arange(2 * 16 * 16, dtype=torch.uint8).view(2, 1, 16, 16)
    fitted = fitted_images(FakeDataModule(images), "train", (3, 8, 8))
    assert fitted.shape == (2, 3, 8, 8)
    assert torch.equal(fitted[:, 0], fitted[:, 2])
    # Shrinking by two averages each 2x2 block.
    block = images[0, 0, :2, :2].float().mean() / 255
    assert fitted[0, 0, 0, 0].item() == pytest.approx(block.item(), abs=1e-6)
    grown = fitted_images(FakeDataModule(images), "train", (1, 20, 24))
    assert grown.shape == (2, 1, 20, 24)
    same = fitted_images(FakeDataModule(images), "train", (1, 16, 16))
    assert torch.equal(same, images.float() / 255)


def test_a_target_whose_channels_cannot_be_matched_is_one_line():
    assert check_target_shape(target_data_config(["data=mnist"]), (3, 32, 32)) == (1, 28, 28)
    with pytest.raises(UserError, match=r"--data data=cifar10 has 3-channel images and the runs take 1-channel "
                                        r"images; allowed: a target of 1-channel images$"):
        check_target_shape(target_data_config(["data=cifar10"]), (1, 8, 8))


def test_runs_of_different_input_shapes_are_refused(tmp_path):
    digits, mnist = run_config(), run_config("data=mnist")
    runs = [ProbeRun(RunRecord(f"/runs/{i}", i, cfg, {}, {}, {}), None) for i, cfg in enumerate((digits, mnist))]
    assert common_input_shape(runs[:1]) == (1, 8, 8)
    with pytest.raises(UserError, match=r"runs /runs/0 and /runs/1 take different input shapes \(\(1, 8, 8\) and "
                                        r"\(1, 28, 28\)\)"):
        common_input_shape(runs)


def test_the_network_loads_from_its_checkpoint_and_gives_its_penultimate_features(tmp_path):
    cfg = run_config()
    run, network = saved_run(tmp_path / "run", cfg)
    loaded = load_network(run, (1, 8, 8))
    images = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        expected = network.eval().forward_features(images)
        assert torch.equal(loaded.forward_features(images), expected)
    assert expected.shape == (5, 8) and not loaded.training


def test_a_checkpoint_without_every_feature_tensor_is_refused(tmp_path):
    run, _ = saved_run(tmp_path / "run", run_config())
    checkpoint = torch.load(run.checkpoint.path, weights_only=True)
    checkpoint["state_dict"].pop("model.features.0.weight")
    torch.save(checkpoint, run.checkpoint.path)
    with pytest.raises(UserError, match="checkpoint best.ckpt lacks the feature tensor features.0.weight"):
        load_network(run, (1, 8, 8))


def test_features_are_cached_per_run_checkpoint_and_target(tmp_path, monkeypatch):
    run, _ = saved_run(tmp_path / "run", run_config())
    images = {"train": torch.randn(6, 1, 8, 8), "test": torch.randn(3, 1, 8, 8)}
    target = target_data_config([])
    first = run_features(run, images, target, tmp_path / "cache")
    assert {split: f.shape for split, f in first.items()} == {"train": (6, 8), "test": (3, 8)}
    builds = []
    monkeypatch.setattr(probing_features, "load_network", lambda *a: builds.append(a) or load_network(*a))
    again = run_features(run, images, target, tmp_path / "cache")
    assert builds == [] and all(torch.equal(first[s], again[s]) for s in first)
    run_features(run, images, {**target, "batch_size": 7}, tmp_path / "cache")  # another target: recomputed
    assert len(builds) == 1
