"""Each loader on tiny files written in the dataset's real on-disk format; the cache; the real MNIST when present."""
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from data_configs import load_dataset
import scipy.io
import torch

from regbench.data.files import RAW_FILES, cache_path, check_data_files
from regbench.errors import UserError

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_cifar_batch(path: Path, n: int, label_key: bytes, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump({b"batch_label": b"tiny", label_key: labels, b"data": data, b"filenames": []}, handle)
    return data, labels


def write_tiny_cifar10(root: Path) -> tuple[np.ndarray, list[int]]:
    parts = [write_cifar_batch(root / "cifar-10-batches-py" / f"data_batch_{i}", 3, b"labels", i) for i in range(1, 6)]
    write_cifar_batch(root / "cifar-10-batches-py" / "test_batch", 4, b"labels", 9)
    return np.concatenate([p[0] for p in parts]), sum((p[1] for p in parts), [])


def test_cifar10_pickle_batches(tmp_path):
    data, labels = write_tiny_cifar10(tmp_path)
    loaded = load_dataset("cifar10", root=str(tmp_path), download=False, split_seed=0, cache=False)
    assert loaded.train_x.shape == (15, 3, 32, 32) and loaded.test_x.shape == (4, 3, 32, 32)
    assert loaded.train_y.tolist() == labels and loaded.num_classes == 10 and loaded.hflip_ok
    # Row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major over 32x32.
    i, channel, y, x = 7, 2, 5, 30
    assert loaded.train_x[i, channel, y, x].item() == data[i, channel * 1024 + y * 32 + x]


def test_cifar100_fine_labels(tmp_path):
    _, labels = write_cifar_batch(tmp_path / "cifar-100-python" / "train", 6, b"fine_labels", 1)
    write_cifar_batch(tmp_path / "cifar-100-python" / "test", 2, b"fine_labels", 2)
    loaded = load_dataset("cifar100", root=str(tmp_path), download=False, split_seed=0, cache=False)
    assert loaded.train_y.tolist() == labels and loaded.num_classes == 100


def test_svhn_mat_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10], [5]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": X, "y": y})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X[..., :2], "y": y[:2]})
    loaded = load_dataset("svhn", root=str(tmp_path), download=False, split_seed=0, cache=False)
    assert loaded.train_y.tolist() == [0, 1, 9, 0, 5]  # label 10 is the digit 0
    assert loaded.train_x.shape == (5, 3, 32, 32) and not loaded.hflip_ok
    assert loaded.train_x[3, 1, 4, 20].item() == X[4, 20, 1, 3]


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_tiny_idx(root: Path, folder: str) -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", 6), ("t10k", 3)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


@pytest.mark.parametrize("loader, folder, torchvision_name", [("mnist", "MNIST", "MNIST"),
                                                              ("fashion_mnist", "FashionMNIST", "FashionMNIST")])
def test_idx_files_read_like_torchvision(tmp_path, loader, folder, torchvision_name):
    import torchvision.datasets

    write_tiny_idx(tmp_path, folder)
    loaded = load_dataset(loader, root=str(tmp_path), download=False, split_seed=0, cache=False)
    reference = getattr(torchvision.datasets, torchvision_name)(root=str(tmp_path), train=True, download=False)
    assert torch.equal(loaded.train_x[:, 0], reference.data) and torch.equal(loaded.train_y, reference.targets)
    assert loaded.test_x.shape == (3, 1, 28, 28)


def test_cache_file_is_used_on_the_second_load(tmp_path):
    write_tiny_cifar10(tmp_path)
    first = load_dataset("cifar10", root=str(tmp_path), download=False, split_seed=0)
    assert cache_path(str(tmp_path), "cifar10").is_file()
    for batch in (tmp_path / "cifar-10-batches-py").iterdir():
        batch.write_bytes(b"gone")  # the raw files are no longer readable: only the cache can serve
    second = load_dataset("cifar10", root=str(tmp_path), download=False, split_seed=0)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)


def test_corrupt_cache_is_rebuilt(tmp_path):
    write_tiny_idx(tmp_path, "MNIST")
    cache_path(str(tmp_path), "MNIST").parent.mkdir(parents=True)
    cache_path(str(tmp_path), "MNIST").write_bytes(b"truncated")
    loaded = load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0)
    assert loaded.train_x.shape == (6, 1, 28, 28)
    assert torch.load(cache_path(str(tmp_path), "MNIST"), weights_only=True)["train_x"].shape == (6, 1, 28, 28)


@pytest.mark.parametrize("loader, expected", [("cifar10", "cifar-10-batches-py/data_batch_1"),
                                              ("cifar100", "cifar-100-python/train"),
                                              ("svhn", "train_32x32.mat"),
                                              ("fashion_mnist", "FashionMNIST/raw/train-images-idx3-ubyte")])
def test_missing_files_name_the_expected_path(tmp_path, loader, expected):
    with pytest.raises(UserError, match=str(tmp_path / expected)) as err:
        load_dataset(loader, root=str(tmp_path), download=False, split_seed=0, cache=False)
    assert "\n" not in str(err.value) and "data.download=true" in str(err.value)


def test_corrupt_files_name_the_path(tmp_path):
    write_tiny_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"data_batch_3 is not a valid CIFAR python batch"):
        load_dataset("cifar10", root=str(tmp_path), download=False, split_seed=0, cache=False)
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match=r"train_32x32.mat is not a valid SVHN .mat file"):
        load_dataset("svhn", root=str(tmp_path), download=False, split_seed=0, cache=False)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy on this machine")
def test_real_mnist():
    loaded = load_dataset("mnist", root=str(SHARED_DATA), download=False, split_seed=0, cache=False)
    assert loaded.train_x.shape == (60000, 1, 28, 28) and loaded.test_x.shape == (10000, 1, 28, 28)
    assert loaded.train_x.float().div(255).mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert torch.bincount(loaded.test_y).tolist()[:2] == [980, 1135]


class OfflineDataset:
    """Stands in for a torchvision dataset class on a machine without network."""

    def __init__(self, root, download, **_):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example.org/mnist/, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>")


@pytest.mark.parametrize("loader, dataset_class, expected", [
    ("mnist", "MNIST", "MNIST/raw"), ("fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
    ("cifar10", "CIFAR10", "cifar-10-batches-py"), ("cifar100", "CIFAR100", "cifar-100-python"),
    ("svhn", "SVHN", "train_32x32.mat"),
])
def test_a_failed_download_is_one_line_naming_the_folder(tmp_path, monkeypatch, loader, dataset_class, expected):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, dataset_class, OfflineDataset)
    with pytest.raises(UserError) as err:
        load_dataset(loader, root=str(tmp_path), download=True, split_seed=0, cache=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.download=true could not fetch")
    assert expected in message and str(tmp_path) in message and "Name or service not known" in message


def test_idx_files_with_different_image_and_label_counts_are_refused(tmp_path):
    write_tiny_idx(tmp_path, "MNIST")
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(5))  # 6 images, 5 labels
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte holds 5 labels but .*train-images-idx3-ubyte "
                                        r"holds 6 images"):
        load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0, cache=False)


def test_a_cache_file_of_other_tensors_is_rebuilt(tmp_path):
    write_tiny_idx(tmp_path, "MNIST")
    cache_path(str(tmp_path), "MNIST").parent.mkdir(parents=True)
    torch.save({"images": torch.zeros(2)}, cache_path(str(tmp_path), "MNIST"))  # valid file, foreign content
    assert load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0).train_x.shape == (6, 1, 28, 28)


def write_tiny_svhn(root: Path, test_labels: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    scipy.io.savemat(root / "train_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, 3), dtype=np.uint8),
                                                "y": np.array([[10], [1], [9]], dtype=np.uint8)})
    scipy.io.savemat(root / "test_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, len(test_labels)),
                                                                 dtype=np.uint8), "y": test_labels.astype(np.uint8)})


def test_labels_outside_the_classes_name_the_file_the_label_and_the_range(tmp_path):
    write_tiny_idx(tmp_path, "MNIST")
    labels_file = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    write_idx(labels_file, np.array([0, 1, 2, 25, 4, 5]))
    with pytest.raises(UserError) as err:
        load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0, cache=False)
    assert str(err.value) == (f"{labels_file} holds label 25 (at position 3); allowed labels: 0..9; the file is "
                              f"corrupt or from another dataset: re-fetch it")

    write_tiny_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with batch.open("wb") as handle:
        pickle.dump({b"labels": [3, 99], b"data": np.zeros((2, 3072), dtype=np.uint8)}, handle)
    with pytest.raises(UserError, match=rf"^{batch} holds label 99 \(at position 1\); allowed labels: 0..9;"):
        load_dataset("cifar10", root=str(tmp_path), download=False, split_seed=0, cache=False)

    write_cifar_batch(tmp_path / "cifar-100-python" / "train", 6, b"fine_labels", 1)
    with (tmp_path / "cifar-100-python" / "test").open("wb") as handle:
        pickle.dump({b"fine_labels": [100], b"data": np.zeros((1, 3072), dtype=np.uint8)}, handle)
    with pytest.raises(UserError, match=r"cifar-100-python/test holds label 100 \(at position 0\); allowed labels: "
                                        r"0..99;"):
        load_dataset("cifar100", root=str(tmp_path), download=False, split_seed=0, cache=False)

    write_tiny_svhn(tmp_path, np.array([[3], [11]]))  # SVHN's files number the digits 1..10
    with pytest.raises(UserError, match=r"test_32x32.mat holds label 11 \(at position 1\); allowed labels: 1..10;"):
        load_dataset("svhn", root=str(tmp_path), download=False, split_seed=0, cache=False)


def test_idx_images_of_another_size_are_refused(tmp_path):
    write_tiny_idx(tmp_path, "MNIST")
    images_file = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    write_idx(images_file, np.zeros((3, 20, 20)))
    with pytest.raises(UserError, match=rf"^{images_file} holds 20x20 images; MNIST's are 28x28"):
        load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0, cache=False)


def mnist_cache_with(tmp_path: Path, **changes) -> Path:
    """A cache file with the right keys whose tensors are as `changes` say."""
    arrays = {"train_x": torch.zeros(6, 1, 28, 28, dtype=torch.uint8), "train_y": torch.zeros(6, dtype=torch.int64),
              "test_x": torch.zeros(3, 1, 28, 28, dtype=torch.uint8), "test_y": torch.zeros(3, dtype=torch.int64)}
    path = cache_path(str(tmp_path), "MNIST")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**arrays, **changes}, path)
    return path


@pytest.mark.parametrize("changes,problem", [
    ({"train_x": torch.zeros(6, 28, 28, dtype=torch.uint8)}, "train_x is (6, 28, 28) torch.uint8; expected "
                                                             "(N, 1, 28, 28) torch.uint8"),
    ({"test_y": torch.zeros(3)}, "test_y is (3,) torch.float32; expected (N,) torch.int64"),
    ({"test_y": torch.tensor([0, 10, 1])}, "test_y holds label 10; allowed: 0..9"),
    ({"train_y": torch.zeros(5, dtype=torch.int64)}, "train_x holds 6 images but train_y 5 labels"),
])
def test_a_cache_with_wrong_tensors_is_rebuilt_from_the_raw_files_or_refused_in_one_line(tmp_path, changes,
                                                                                         problem):
    path = mnist_cache_with(tmp_path, **changes)
    with pytest.raises(UserError) as err:  # no raw files: nothing to rebuild it from
        load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0)
    assert str(err.value).startswith(f"the data cache {path} is corrupt ({problem}) and rebuilding it from the raw "
                                     f"files failed: MNIST files not found:")
    assert "\n" not in str(err.value)
    write_tiny_idx(tmp_path, "MNIST")
    with pytest.warns(UserWarning, match=re.escape(f"the data cache {path} was corrupt ({problem}); rebuilt it "
                                                   f"from the raw files")):
        loaded = load_dataset("mnist", root=str(tmp_path), download=False, split_seed=0)
    assert torch.equal(torch.load(path, weights_only=True)["train_x"], loaded.train_x)


def data_config(name: str, root: Path) -> dict:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module("regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"data={name}", f"data.root={root}"])
    return OmegaConf.to_container(cfg.data, resolve=True)


@pytest.mark.parametrize("name", sorted(RAW_FILES))
def test_missing_raw_files_are_refused_before_loading_in_the_loaders_words(name, tmp_path):
    from regbench.data.module import load_images

    data = data_config(name, tmp_path)
    with pytest.raises(UserError) as checked:
        check_data_files(data)
    with pytest.raises(UserError) as loading:
        load_images(data)
    assert str(checked.value) == str(loading.value) and "files not found" in str(checked.value)
    check_data_files({**data, "download": True})  # the loader fetches them
    cache_name, _ = RAW_FILES[name]
    cache_path(str(tmp_path), cache_name).parent.mkdir()
    cache_path(str(tmp_path), cache_name).touch()  # read instead of the raw files (and checked as it loads)
    check_data_files(data)
    with pytest.raises(UserError, match="files not found"):
        check_data_files({**data, "cache": False})


def test_datasets_without_raw_files_pass_the_file_check(tmp_path):
    check_data_files(data_config("digits", tmp_path))


def test_a_file_dataset_without_a_root_is_one_line():
    data = {**data_config("mnist", Path("unused")), "root": None}
    with pytest.raises(UserError, match=r"^data.root=None is invalid: data=mnist reads its files under it; set "
                                        r"data.root=DIR$"):
        check_data_files(data)
