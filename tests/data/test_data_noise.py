"""Label noise: realised rates and transition patterns against the papers' constructions."""
import numpy as np
import pytest
import torch

from regbench.specs.data_values import check_noise_config
from regbench.data.noise import corrupt_labels, noise_summary, read_label_file, realised_transition
from regbench.errors import ParamError, UserError

C = 10


def balanced_labels(per_class: int, num_classes: int = C) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(per_class)


def noise(kind: str, rate: float, convention: str = "uniform_all", construction: str = "exact", **extra) -> dict:
    return {"type": kind, "rate": rate, "convention": convention, "construction": construction, "file": None,
            "key": "aggre_label", "apply_to_val": False, "seed": 0, **extra}


def corrupt(labels, cfg, dataset="cifar10", num_classes=C, seed=0):
    return corrupt_labels(labels, cfg, dataset, num_classes, torch.Generator().manual_seed(seed))


def test_uniform_all_draws_r_n_labels_from_all_classes():
    labels = balanced_labels(2000)
    noisy = corrupt(labels, noise("symmetric", 0.4))
    changed = int((noisy != labels).sum())
    chosen = round(0.4 * len(labels))
    # Of the r*N redrawn labels a fraction 1/C lands on the true class again (Binomial(r*N, (C-1)/C)).
    sd = (chosen * 0.9 * 0.1) ** 0.5
    assert changed <= chosen and abs(changed - chosen * 0.9) < 5 * sd
    # Two classes, rate 1: every label is redrawn, half survive.
    two = balanced_labels(5000, 2)
    kept = float((corrupt(two, noise("symmetric", 1.0), num_classes=2) == two).double().mean())
    assert abs(kept - 0.5) < 0.03


def test_uniform_other_flips_exactly_r_of_each_class_to_other_classes():
    labels = torch.cat([balanced_labels(300), torch.zeros(37, dtype=torch.long)])
    noisy = corrupt(labels, noise("symmetric", 0.3, "uniform_other"))
    for c in range(C):
        members = labels == c
        n_c = int(members.sum())
        assert int((noisy[members] != c).sum()) == round(0.3 * n_c)
    flipped_to = np.bincount(noisy[(labels == 0) & (noisy != labels)].numpy(), minlength=C)
    assert flipped_to[0] == 0 and (flipped_to[1:] > 0).all()


def test_transition_convention_matches_the_co_teaching_matrix():
    labels = balanced_labels(20000, 5)
    noisy = corrupt(labels, noise("symmetric", 0.3, "transition"), num_classes=5)
    expected = np.full((5, 5), 0.3 / 4)
    np.fill_diagonal(expected, 0.7)
    assert np.abs(realised_transition(labels, noisy, 5).numpy() - expected).max() < 0.015


def test_pairflip_moves_to_the_next_class_only():
    labels = balanced_labels(20000, 4)
    noisy = corrupt(labels, noise("pairflip", 0.45), num_classes=4)
    expected = 0.55 * np.eye(4) + 0.45 * np.roll(np.eye(4), 1, axis=1)
    observed = realised_transition(labels, noisy, 4).numpy()
    assert np.abs(observed - expected).max() < 0.015
    assert (observed[expected == 0] == 0).all()


def test_asymmetric_cifar10_map():
    labels = balanced_labels(500)
    noisy = corrupt(labels, noise("asymmetric", 0.4))
    for untouched in (0, 1, 6, 7, 8):
        assert torch.equal(noisy[labels == untouched], labels[labels == untouched])
    # truck->automobile, bird->airplane, deer->horse, cat<->dog, each exactly 40% of the class.
    for source, target in {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}.items():
        values = noisy[labels == source]
        assert int((values == target).sum()) == 200 and int((values == source).sum()) == 300


def test_asymmetric_cifar100_shifts_within_blocks_of_five():
    labels = balanced_labels(20, 100)
    noisy = corrupt(labels, noise("asymmetric", 0.5), dataset="cifar100", num_classes=100)
    moved = noisy != labels
    assert int(moved.sum()) == 100 * 10
    block_start = labels[moved] // 5 * 5
    assert torch.equal(noisy[moved], block_start + (labels[moved] - block_start + 1) % 5)


def test_elr_cifar10_relabels_in_place_so_cats_turned_dogs_can_turn_back():
    """ELR's code, by hand for n = 2000 per class at r = 0.4: truck, bird, deer each move ceil(0.4 n) = 800.
    Cats go first: 800 become dogs. The dogs are then the 2000 clean dogs plus those 800: ceil(0.4 * 2800) =
    1120 of them become cats, drawn uniformly, so X ~ Hypergeometric(2800, 800, 1120) of the former cats turn
    back, E[X] = 1120 * 800 / 2800 = 320: cats ending dog (800 - X) / 2000 ~ 0.24, dogs ending cat
    (1120 - X) / 2000 ~ 0.40, realised rate (3 * 800 + 800 - X + 1120 - X) / 20000 ~ 0.184 (sd of X: 11.7)."""
    labels = balanced_labels(2000)
    noisy = corrupt(labels, noise("asymmetric", 0.4, construction="elr"))
    cat, dog = noisy[labels == 3], noisy[labels == 5]
    assert int((noisy == 3).sum()) == 2000 - 800 + 1120 and int((noisy == 5).sum()) == 2800 - 1120  # exact
    assert abs(float((cat == 5).double().mean()) - 0.24) < 0.03
    assert abs(float((dog == 3).double().mean()) - 0.40) < 0.03
    assert abs(float((noisy != labels).double().mean()) - 0.184) < 0.006
    for source, target in {9: 1, 2: 0, 4: 7}.items():
        assert int((noisy[labels == source] == target).sum()) == 800
    # ELR moves j < r * n samples, ceil(r * n): 401 of 1001 trucks (the exact construction: round, 400).
    odd = balanced_labels(1001)
    assert int((corrupt(odd, noise("asymmetric", 0.4, construction="elr"))[odd == 9] == 1).sum()) == 401
    assert int((corrupt(odd, noise("asymmetric", 0.4))[odd == 9] == 1).sum()) == 400


def test_elr_cifar100_draws_each_sample_from_the_next_in_block_matrix():
    # ELR's multiclass_noisify: every sample moves to the next class of its block of 5 with probability r,
    # so the realised rate is r on average (sd 0.0035 here) and the count per class varies.
    labels = balanced_labels(200, 100)
    noisy = corrupt(labels, noise("asymmetric", 0.4, construction="elr"), dataset="cifar100", num_classes=100)
    moved = noisy != labels
    assert abs(float(moved.double().mean()) - 0.4) < 0.02
    block_start = labels[moved] // 5 * 5
    assert torch.equal(noisy[moved], block_start + (labels[moved] - block_start + 1) % 5)
    assert len(set(torch.bincount(labels[moved], minlength=100).tolist())) > 1


@pytest.mark.parametrize("cfg, dataset, message", [
    (noise("asymmetric", 0.2, construction="elr"), "mnist",
     r"noise.construction='elr' is invalid: ELR's code builds asymmetric noise for cifar10, cifar100 only"),
    (noise("asymmetric", 0.2, construction="ELR"), "cifar10",
     r"noise.construction='ELR' is invalid: allowed: exact, elr"),
])
def test_bad_asymmetric_constructions_are_refused(cfg, dataset, message):
    with pytest.raises(ParamError, match=message):
        check_noise_config(cfg, dataset)


def test_asymmetric_mnist_map_without_chains():
    labels = balanced_labels(100)
    noisy = corrupt(labels, noise("asymmetric", 1.0), dataset="mnist")
    expected = {0: 0, 1: 1, 2: 7, 3: 8, 4: 4, 5: 6, 6: 5, 7: 1, 8: 8, 9: 9}
    for source, target in expected.items():
        assert (noisy[labels == source] == target).all()
    assert torch.equal(corrupt(labels, noise("asymmetric", 1.0), dataset="digits"), noisy)


@pytest.mark.parametrize("dataset", ["fashion_mnist", "synthetic"])
def test_asymmetric_without_a_map_is_refused(dataset):
    with pytest.raises(ParamError, match=r"noise.type='asymmetric' .*cifar10"):
        check_noise_config(noise("asymmetric", 0.2), dataset)


@pytest.mark.parametrize("cfg", [noise("symmetric", 0.3), noise("symmetric", 0.3, "uniform_other"),
                                 noise("symmetric", 0.3, "transition"), noise("pairflip", 0.3),
                                 noise("asymmetric", 0.3), noise("asymmetric", 0.3, construction="elr")])
def test_noise_is_seeded(cfg):
    labels = balanced_labels(200)
    assert torch.equal(corrupt(labels, cfg, seed=1), corrupt(labels, cfg, seed=1))
    assert not torch.equal(corrupt(labels, cfg, seed=1), corrupt(labels, cfg, seed=2))


def test_summary_reports_the_realised_rate_and_matrix():
    clean = torch.tensor([0, 0, 0, 0, 1, 1])
    noisy = torch.tensor([0, 1, 1, 0, 1, 0])
    summary = noise_summary(clean, noisy, noise("pairflip", 0.5), 2)
    assert summary["realised_rate"] == pytest.approx(3 / 6)
    assert summary["transition_matrix"] == [[0.5, 0.5], [0.5, 0.5]]
    assert summary["convention"] is None and summary["construction"] is None and summary["rate"] == 0.5
    assert noise_summary(clean, noisy, noise("asymmetric", 0.5, construction="elr"), 2)["construction"] == "elr"


def write_cifar_n(path, full_labels: np.ndarray, noisy: np.ndarray):
    torch.save({"clean_label": full_labels, "aggre_label": noisy, "worse_label": noisy}, path)


def test_file_noise_reads_cifar_n_labels_by_key_and_position(tmp_path):
    full = np.arange(20) % C
    noisy = (full + 3) % C
    write_cifar_n(tmp_path / "CIFAR-10_human.pt", full, noisy)
    positions = torch.tensor([4, 0, 17])
    cfg = noise("file", 0.0, file=str(tmp_path / "CIFAR-10_human.pt"), key="worse_label")
    given = corrupt_labels(torch.from_numpy(full)[positions], cfg, "cifar10", C, torch.Generator(), positions,
                           torch.from_numpy(full))
    assert given.tolist() == noisy[[4, 0, 17]].tolist()


def test_file_noise_errors(tmp_path):
    full = np.arange(20) % C
    path = tmp_path / "n.pt"
    write_cifar_n(path, full, full)
    with pytest.raises(UserError, match=r"data.noise.key='random_label1' is not in .*aggre_label"):
        read_label_file(str(path), "random_label1")
    with pytest.raises(UserError, match=r"data.noise.file='.*missing.pt' not found"):
        read_label_file(str(tmp_path / "missing.pt"), "aggre_label")
    cfg = noise("file", 0.0, file=str(path))
    wrong = torch.from_numpy((full + 1) % C)
    with pytest.raises(UserError, match="clean_label disagrees"):
        corrupt_labels(wrong, cfg, "cifar10", C, torch.Generator(), torch.arange(20), wrong)
    with pytest.raises(ParamError, match="noise.key='bogus'"):
        check_noise_config(noise("file", 0.0, file=str(path), key="bogus"), "cifar10")


def as_written_by_numpy_1(path):
    """Rewrite a torch-saved file of numpy arrays the way numpy 1.x pickled them (numpy.core, not numpy._core).

    Protocol-2 pickles name globals as newline-terminated text, so the module can be renamed in place."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    else:
        path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


@pytest.mark.parametrize("zip_format", [True, False])
def test_cifar_n_files_written_under_numpy_1_load(tmp_path, zip_format):
    # The published CIFAR-10N/100N files date from 2021: their pickles name numpy.core.multiarray._reconstruct
    full = np.arange(20) % C
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": full, "aggre_label": (full + 1) % C}, path, _use_new_zipfile_serialization=zip_format)
    as_written_by_numpy_1(path)
    assert b"numpy._core" not in path.read_bytes()
    labels = read_label_file(str(path), "aggre_label")
    assert labels["aggre_label"].tolist() == ((full + 1) % C).tolist()
