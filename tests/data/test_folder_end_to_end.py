"""The real CLI on generated folders: your own class folders in memory (with label noise, a long tail and
upsampling), TinyImageNet in memory, ImageNet's layout streamed by workers; bad folders in one line."""
import json

import pytest

from image_trees import write_class_folders, write_imagenet, write_tiny_imagenet

TINY = ["trainer.max_epochs=2", "backbone.widths=[8]", "logger=none", "data.batch_size=4"]


@pytest.fixture
def train(run_regbench):
    """`regbench train TINY OVERRIDES` into tmp_path/RUN."""
    return lambda *overrides, run="run": run_regbench("train", *TINY, *overrides, f"hydra.run.dir={run}")


def metrics(tmp_path, run="run") -> dict:
    return json.loads((tmp_path / run / "metrics.json").read_text())


@pytest.mark.slow
def test_own_image_folder_trains_in_memory_with_noise_a_long_tail_and_upsampling(tmp_path, train):
    write_class_folders(tmp_path / "images", 12)
    result = train("data=image_folder", f"data.root={tmp_path / 'images'}", "data.image_size=16",
                   "data.noise.type=symmetric", "data.noise.rate=0.2", "data.imbalance.type=exponential",
                   "data.imbalance.factor=2", "data.balance.type=upsample", "data.balance.tau=1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = metrics(tmp_path)
    assert out["status"] == "completed" and out["noise"]["rate"] == 0.2
    assert out["imbalance"]["train_counts"] == [9, 6, 4] and len(out["per_class_acc"]) == 3
    assert out["classes"] == ["cat", "dog", "emu"]
    assert list((tmp_path / "images" / "regbench_cache").glob("image_folder-*.uint8.pt"))


@pytest.mark.slow
def test_tiny_imagenet_trains_in_memory_and_imagenet_layout_streams_with_workers(tmp_path, train):
    write_tiny_imagenet(tmp_path, per_class=6)
    result = train("data=tiny_imagenet", f"data.root={tmp_path}", "data.val_fraction=0.2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert metrics(tmp_path)["classes"][0] == "n01443537 cat"
    assert (tmp_path / "regbench_cache").is_dir()

    write_imagenet(tmp_path / "imagenet", per_class=6)
    result = train("data=imagenet", f"data.root={tmp_path / 'imagenet'}", "data.image_size=16",
                   "data.val_fraction=0.2", "data.storage=stream", "data.num_workers=2", run="streamed")
    assert result.returncode == 0, result.stderr[-2000:]
    out = metrics(tmp_path, "streamed")
    assert out["status"] == "completed" and out["epochs"] == 2 and out["classes"][2] == "n01641577"
    assert not (tmp_path / "imagenet" / "regbench_cache").exists()  # streamed: nothing decoded ahead


@pytest.mark.slow
def test_a_bad_folder_stops_the_command_in_one_line(tmp_path, train):
    write_class_folders(tmp_path / "images", 3)
    (tmp_path / "images" / "dog" / "001.png").write_bytes(b"broken")
    result = train("data=image_folder", f"data.root={tmp_path / 'images'}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "dog/001.png is not a readable image" in result.stderr
    result = train("data=image_folder", run="unset")
    assert result.returncode == 2 and "data.root is not set" in result.stderr
