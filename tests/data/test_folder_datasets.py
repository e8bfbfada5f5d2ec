"""The folder datasets on generated trees in their real layouts: classes, splits, facts without decoding, the
stored view, the decoded-tensor cache, the storage choice, and every bad folder in one line."""
from pathlib import Path

import pytest
import torch

from regbench.data.facts import dataset_facts, loader_params
from regbench.data.folder import CACHE_DIR, list_image_folder
from regbench.data.images import read_image, stored_view
from regbench.data.module import ImageDataModule
from regbench.data.storage import choose_storage
from regbench.errors import UserError
from data_configs import dataset_config, label_shift, load_dataset
from image_trees import CLASSES, WNIDS, write_class_folders, write_image, write_imagenet, write_tiny_imagenet


def folder(tmp_path: Path, **params):
    return load_dataset("image_folder", download=False, root=str(tmp_path), split_seed=0, **{"image_size": 8, **params})


def test_flat_class_folders_of_jpeg_and_png_draw_a_stratified_test_split(tmp_path):
    write_class_folders(tmp_path, 10)
    data = folder(tmp_path, test_fraction=0.2)
    assert data.classes == list(CLASSES)
    assert torch.bincount(data.train_y).tolist() == [8, 8, 8] and torch.bincount(data.test_y).tolist() == [2, 2, 2]
    assert {Path(p).suffix for p in data.train_x.paths} == {".jpg", ".png"}
    assert not set(data.train_x.paths) & set(data.test_x.paths)
    params = {**loader_params(dataset_config("image_folder")), "image_size": 8, "test_fraction": 0.2}
    facts = dataset_facts("image_folder", params, str(tmp_path), 0)
    assert facts.image_shape == (3, 8, 8) and facts.train_class_counts == (8, 8, 8) and facts.val_class_counts is None
    decoded = data.decode()
    assert decoded.train_x.shape == (24, 3, 8, 8) and decoded.train_x.dtype == torch.uint8
    # Computed from the training images: each class is bright in its own channel, so every mean is near 200/3.
    assert all(abs(m - 200 / 3 / 255) < 0.05 for m in decoded.mean) and all(s > 0.3 for s in decoded.std)


def test_train_val_test_folders_give_the_validation_split_and_train_val_alone_tests_on_val(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        write_class_folders(tmp_path / "full" / split, n, seed=len(split))
    data = load_dataset("image_folder", download=False, root=str(tmp_path / "full"), split_seed=0, image_size=8)
    params = {**loader_params(dataset_config("image_folder")), "image_size": 8}
    facts = dataset_facts("image_folder", params, str(tmp_path / "full"), 0)
    assert facts.train_class_counts == (4, 4, 4) and facts.val_class_counts == (2, 2, 2)
    module = ImageDataModule(data.decode(), batch_size=2, val_fraction=0.5, split_seed=0, seed=0, crop_padding=0,
                             hflip=True, dataset="image_folder", **label_shift())
    assert module.split_size("train") == 12 and module.split_size("val") == 6 and module.split_size("test") == 9
    assert module.splits["val"][2].tolist() == list(range(12, 18))  # the val folder, not a draw from train

    for split, n in (("train", 4), ("val", 2)):
        write_class_folders(tmp_path / "two" / split, n, seed=len(split))
    data = load_dataset("image_folder", download=False, root=str(tmp_path / "two"), split_seed=0, image_size=8)
    assert data.val_idx is None and len(data.test_y) == 6 and all("/val/" in p for p in data.test_x.paths)


def test_tiny_imagenet_reads_wnids_words_and_the_val_annotations(tmp_path):
    write_tiny_imagenet(tmp_path, per_class=3, val_per_class=2)
    data = load_dataset("tiny_imagenet", download=False, root=str(tmp_path))
    assert data.classes == [f"{w} {name}" for w, name in zip(WNIDS, CLASSES)]
    assert torch.bincount(data.train_y).tolist() == [3, 3, 3]
    # val_annotations.txt labels image i with class i mod 3; the unlabelled test split is not read.
    assert [int(Path(p).stem.split("_")[1]) % 3 for p in data.test_x.paths] == data.test_y.tolist()
    assert not any("/test/" in p for p in data.test_x.paths)
    decoded = data.decode()
    assert decoded.train_x.shape == (9, 3, 64, 64) and decoded.test_x.shape == (6, 3, 64, 64)
    params = loader_params(dataset_config("tiny_imagenet"))
    assert dataset_facts("tiny_imagenet", params, str(tmp_path), 0).train_class_counts == (3, 3, 3)


def test_imagenet_reads_train_and_val_class_folders(tmp_path):
    write_imagenet(tmp_path, per_class=3, val_per_class=2)
    data = load_dataset("imagenet", download=False, root=str(tmp_path), image_size=16, mean=[0.5, 0.4, 0.3],
                        std=[0.2, 0.2, 0.2])
    assert data.classes == list(WNIDS) and data.mean == (0.5, 0.4, 0.3)
    assert torch.bincount(data.test_y).tolist() == [2, 2, 2] and all("/val/" in p for p in data.test_x.paths)
    assert data.decode().test_x.shape == (6, 3, 16, 16)


def test_the_stored_view_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    path = write_image(tmp_path / "wide.png", 0, 0, size=(40, 20))
    image = read_image(str(path), 3)
    assert image.shape == (3, 20, 40)
    whole = stored_view(image, 10, 1.0)
    assert whole.shape == (3, 10, 10)
    from torchvision.transforms.v2.functional import resize
    assert torch.equal(whole, resize(image, [10, 20], antialias=True)[:, :, 5:15])
    cropped = stored_view(image, 8, 0.8)  # 8 / 0.8 = 10: a centred 8x8 out of a 10x20 resize
    assert torch.equal(cropped, resize(image, [10, 20], antialias=True)[:, 1:9, 6:14])
    assert read_image(str(path), 1).shape == (1, 20, 40)


def test_decoded_images_are_cached_and_a_changed_folder_is_decoded_again(tmp_path):
    write_class_folders(tmp_path, 4)
    first = folder(tmp_path).decode()
    caches = list((tmp_path / CACHE_DIR).glob("image_folder-*.uint8.pt"))
    assert len(caches) == 1 and folder(tmp_path).classes == list(CLASSES)  # the cache folder is no class
    assert torch.equal(folder(tmp_path).decode().train_x, first.train_x)
    write_image(tmp_path / "cat" / "999.png", 0, 1)
    list_image_folder.cache_clear()  # a new command lists the folder again
    assert len(folder(tmp_path).decode().train_y) == len(first.train_y) + 1
    assert len(list((tmp_path / CACHE_DIR).glob("image_folder-*.uint8.pt"))) == 2


def test_storage_auto_streams_what_does_not_fit_and_memory_is_refused_then(tmp_path):
    cfg = {"name": "imagenet", "storage": "auto", "max_memory_gb": 1}
    assert choose_storage(cfg, 100 * 2 ** 20) == "memory"
    assert choose_storage(cfg, 300 * 2 ** 20) == "stream"  # 4 bytes per value in memory: 1.2 GiB
    assert choose_storage({**cfg, "storage": "stream"}, 10) == "stream"
    with pytest.raises(UserError, match=r"^data.storage=memory: imagenet takes 1.2 GiB in memory \(float32\), more "
                                        r"than data.max_memory_gb=1; use data.storage=stream"):
        choose_storage({**cfg, "storage": "memory"}, 300 * 2 ** 20)


def test_bad_folders_are_one_line_naming_the_problem(tmp_path):
    write_class_folders(tmp_path / "empty", 2)
    (tmp_path / "empty" / "dog" / "000.jpg").unlink()
    (tmp_path / "empty" / "dog" / "001.png").unlink()
    with pytest.raises(UserError, match=r"^class folder .*empty/dog holds no images \(extensions: .jpg"):
        folder(tmp_path / "empty")

    write_class_folders(tmp_path / "corrupt", 2)
    (tmp_path / "corrupt" / "dog" / "000.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(UserError, match=r"^.*corrupt/dog/000.jpg is not a readable image \(UnidentifiedImageError\)"):
        folder(tmp_path / "corrupt").decode()

    write_class_folders(tmp_path / "mixed", 2)
    write_image(tmp_path / "mixed" / "emu" / "gray.png", 2, 0, mode="L")
    with pytest.raises(UserError, match=r"^the images have mixed modes: .*cat/000.jpg is RGB but .*emu/gray.png is "
                                        r"L; set data.channels=1 or data.channels=3 to convert them all$"):
        folder(tmp_path / "mixed")
    assert folder(tmp_path / "mixed", channels=3).decode().train_x.shape[1] == 3
    assert folder(tmp_path / "mixed", channels=1).decode().train_x.shape[1] == 1

    write_class_folders(tmp_path / "split" / "train", 2)
    write_class_folders(tmp_path / "split" / "test", 2, classes=CLASSES[:2])
    with pytest.raises(UserError, match=r"^.*split/test lacks class folder\(s\) emu; every split needs the same "
                                        r"class folders as .*split/train$"):
        folder(tmp_path / "split")

    with pytest.raises(UserError, match=r"^data.download=true: regbench does not download imagenet; extract "
                                        r"ILSVRC-2012 \(image-net.org, after sign-up\) into data.root, then set"):
        load_dataset("imagenet", download=True, root=str(tmp_path))
    with pytest.raises(UserError, match=r"^data.root is not set: name the image folder"):
        load_dataset("image_folder", download=False, root=None, split_seed=0)
    with pytest.raises(UserError, match=r"^.*nowhere not found: set data.root to a folder of class folders"):
        folder(tmp_path / "nowhere")
    (tmp_path / "imagenet" / "train" / WNIDS[0]).mkdir(parents=True)
    with pytest.raises(UserError, match=r"^.*imagenet/val not found: expected ILSVRC-2012 extracted as "
                                        r"DIR/train/<wnid>/\*.JPEG and DIR/val/<wnid>/\*.JPEG"):
        load_dataset("imagenet", download=False, root=str(tmp_path / "imagenet"))
    with pytest.raises(UserError, match=r"^.*tiny-imagenet-200 not found: extract tiny-imagenet-200.zip into "
                                        r"data.root="):
        load_dataset("tiny_imagenet", download=False, root=str(tmp_path / "no_tiny"))


@pytest.mark.parametrize("params, message", [
    ({"image_size": 0}, r"^data.image_size=0 is invalid: must be an integer > 0$"),
    ({"channels": 2}, r"^data.channels=2 is invalid: allowed: 1 \(grayscale\), 3 \(RGB\), or null"),
    ({"crop_fraction": 1.5}, r"^data.crop_fraction=1.5 is invalid: must be a number in \(0, 1\]"),
    ({"mean": [0.5], "std": None}, r"^data.mean=\[0.5\] is invalid: give both data.mean and data.std, or neither$"),
    ({"mean": [0.5], "std": [0.2], "channels": 3}, r"^data.mean=\[0.5\] is invalid: must have 3 values"),
])
def test_bad_decoding_parameters_name_the_key(tmp_path, params, message):
    write_class_folders(tmp_path, 2)
    with pytest.raises(UserError, match=message):
        folder(tmp_path, **params)


@pytest.mark.parametrize("overrides, expected", [
    (["data.storage=disk"], "data.storage='disk' is invalid: allowed: auto, memory, stream"),
    (["data.max_memory_gb=0"], "data.max_memory_gb=0 is invalid: must be a number > 0"),
    (["data.num_workers=-1"], "data.num_workers=-1 is invalid: must be an integer >= 0"),
    (["data.augment.crop_padding=4"], "data.augment.crop_padding=4 is invalid: must be 0 with "
                                      "augment.random_resized_crop=true"),
    (["data.augment.random_resized_crop=yes"], "data.augment.random_resized_crop='yes' is invalid: must be true"),
    (["data.image_size=-3"], "data.image_size=-3 is invalid: must be an integer > 0"),
    (["data.batch_size=100"], "data.batch_size=100 is invalid: must be at most the 9 training images"),
])
def test_bad_folder_settings_are_one_line_errors_before_anything_is_decoded(tmp_path, overrides, expected):
    from regbench.sweeps.preflight import preflight

    write_class_folders(tmp_path, 4)
    with pytest.raises(UserError) as err:
        preflight(["data=image_folder", f"data.root={tmp_path}", *overrides], multirun=False)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert not (tmp_path / CACHE_DIR).exists()


@pytest.mark.parametrize("dataset", ["image_folder", "tiny_imagenet", "imagenet"])
def test_every_folder_dataset_config_passes_preflight_with_noise_and_imbalance(tmp_path, dataset):
    from regbench.sweeps.preflight import preflight

    {"image_folder": write_class_folders, "tiny_imagenet": write_tiny_imagenet,
     "imagenet": write_imagenet}[dataset](tmp_path, 6)
    preflight([f"data={dataset}", f"data.root={tmp_path}", "data.batch_size=2", "data.noise.type=symmetric",
               "data.noise.rate=0.2", "data.imbalance.type=step", "data.imbalance.factor=2",
               "data.balance.type=upweight"], multirun=False)
