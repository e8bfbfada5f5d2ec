"""MixOE's math against hand-computed cases (soft targets, Mixup and CutMix with outliers, the loss), its outlier
batches (the training split, seeded), and its refusals: one line, exit 2, before any run directory exists."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.run.cli import main as train_main
from regbench.specs.data import DATASETS
from regbench.regularizers import build_regularizers
from regbench.regularizers.mixing import cutmix_box
from regbench.regularizers.mixoe import OutlierBatches, cutmix_outliers, mixup_outliers, outlier_targets


DEFAULTS = {"outliers": "synthetic", "mode": "mixup", "alpha": 1.0, "beta": 5.0}
RUN = {"data": {"name": "digits", "root": "data", "download": False, "split_seed": 0}, "eval": {}}


def built_mixoe(seed: int = 0, **params):
    """MixOE built as a run builds it: checked against the run config (which loads the outliers), then given the
    in-distribution's image format (mean 0.25, std 0.5)."""
    [reg] = build_regularizers({"mixoe": {**DEFAULTS, **params}}, seed, run=RUN)
    reg.set_image_format((1, 8, 8), torch.tensor([0.25]), torch.tensor([0.5]))
    return reg


def test_the_soft_target_decays_from_the_label_towards_uniform():
    targets = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # lam 0.7, C = 3: the label keeps 0.7 + 0.3 / 3 = 0.8, every other class 0.3 / 3 = 0.1.
    torch.testing.assert_close(outlier_targets(targets, 0.7), torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]]))
    torch.testing.assert_close(outlier_targets(targets, 0.0), torch.full((2, 3), 1 / 3))
    torch.testing.assert_close(outlier_targets(targets, 1.0), targets)


def test_mixup_interpolates_each_image_with_its_outlier():
    images = torch.tensor([[[[2.0, 4.0]]]])
    outliers = torch.tensor([[[[0.0, -4.0]]]])
    torch.testing.assert_close(mixup_outliers(images, outliers, 0.25), torch.tensor([[[[0.5, -2.0]]]]))


def test_cutmix_pastes_the_outlier_box_and_lam_is_the_kept_area():
    images, outliers = torch.ones(2, 1, 4, 4), -torch.ones(2, 1, 4, 4)
    mixed, lam = cutmix_outliers(images, outliers, (1, 3, 0, 2))  # rows 1-2, columns 0-1: 4 of 16 pixels
    assert lam == 0.75
    assert (mixed[..., 1:3, 0:2] == -1).all() and (mixed == 1).sum() == 2 * 12
    assert (images == 1).all()  # the clean batch is left as it was


def test_the_loss_adds_beta_times_the_mixed_soft_cross_entropy():
    reg = built_mixoe(beta=5.0)
    twin = built_mixoe(beta=5.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    images, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    targets = F.one_hot(labels, 3).float()
    out_images, out_targets = reg.mix_batch(images, targets, torch.arange(5))
    assert out_images is images and out_targets is targets  # the module trains on the clean batch
    logits = model(images)
    ce = F.cross_entropy(logits, labels, reduction="none")
    total = reg.loss(ce, logits, targets, torch.arange(5), model)
    # Replay: the next 5 outliers of the seeded permutation, normalized with mean 0.25 and std 0.5, one lam.
    picked = twin.outliers[twin._batches.next_indices(5)]
    outliers = (picked.float() / 255 - 0.25) / 0.5
    lam = twin.rng.betavariate(1.0, 1.0)
    soft = lam * targets + (1 - lam) / 3
    mixed_logits = model(lam * images + (1 - lam) * outliers)
    expected = ce - 5.0 * (soft * mixed_logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(total, expected)


def test_cutmix_mode_targets_use_the_pasted_area():
    reg = built_mixoe(mode="cutmix", alpha=2.0)
    twin_rng = random.Random(reg.seed)
    images = torch.full((4, 1, 8, 8), 100.0)  # far from every normalized outlier pixel
    targets = F.one_hot(torch.tensor([0, 1, 2, 3]), 4).float()
    for _ in range(5):
        mixed, soft = reg.mixed_batch(images, targets)
        kept = (mixed == 100.0).float().mean().item()  # the fraction of in-distribution pixels left
        lam = twin_rng.betavariate(2.0, 2.0)
        top, bottom, left, right = cutmix_box(lam, 8, 8, twin_rng)
        assert kept == pytest.approx(1 - (bottom - top) * (right - left) / 64)
        torch.testing.assert_close(soft, kept * targets + (1 - kept) / 4)


def test_outliers_come_from_the_training_split_in_a_seeded_order():
    synthetic = DATASETS.create("synthetic", {}, root="data", download=False, split_seed=0)
    reg, twin, other = built_mixoe(), built_mixoe(), built_mixoe(seed=1)  # outliers: synthetic
    assert torch.equal(reg.outliers, synthetic.train_x)
    draws = [reg._batches.next_indices(64) for _ in range(3)]
    assert all(torch.equal(twin._batches.next_indices(64), indices) for indices in draws)
    assert not torch.equal(other._batches.next_indices(64), draws[0])
    train_rows = {row.numpy().tobytes() for row in synthetic.train_x}
    test_rows = {row.numpy().tobytes() for row in synthetic.test_x}
    assert all(row.numpy().tobytes() in train_rows - test_rows for row in reg.outliers[torch.cat(draws)])


def test_each_pass_over_the_outliers_draws_each_once_then_reshuffles():
    batches = OutlierBatches(5, seed=3)
    first, second = batches.next_indices(3), batches.next_indices(4)  # the second crosses into a new pass
    assert sorted(torch.cat([first, second[:2]]).tolist()) == [0, 1, 2, 3, 4]
    assert len(set(second[2:].tolist())) == 2


def refused(args: list[str], tmp_path: Path, monkeypatch, capsys) -> str:
    """`regbench train ARGS logger=none` in tmp_path must exit 2 with one line and write nothing."""
    monkeypatch.chdir(tmp_path)
    assert train_main([*args, "logger=none"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("regbench train: error: "), stderr
    assert [path.name for path in tmp_path.iterdir()] in ([], ["empty"])
    return stderr.strip().removeprefix("regbench train: error: ")


@pytest.mark.parametrize("args,message", [
    (["regularizer.mixoe.outliers=imagenet"], "regularizer.mixoe.outliers='imagenet' is invalid: must be one of "
                                              "cifar10, cifar100, digits, fashion_mnist, mnist, svhn, synthetic"),
    (["regularizer.mixoe.outliers=digits"], "regularizer.mixoe.outliers='digits' is invalid: must differ from the "
                                            "in-distribution data=digits"),
    (["eval=[ood]"], "regularizer.mixoe.outliers='synthetic' is invalid: eval.ood.datasets=['synthetic'] tests on "
                     "it; train on outliers the OOD evaluation does not use"),
    (["regularizer.mixoe.mode=manifold"], "regularizer.mixoe.mode='manifold' is invalid: must be one of mixup, "
                                          "cutmix"),
    (["regularizer.mixoe.alpha=0"], "regularizer.mixoe.alpha=0 is invalid: must be a number > 0"),
    (["regularizer.mixoe.beta=-1"], "regularizer.mixoe.beta=-1 is invalid: must be a number >= 0"),
    (["regularizer=[mixoe,cutmix]"], "regularizer=[mixoe,cutmix]: mixoe and cutmix both do input mixing; keep only "
                                     "one of them"),
    (["regularizer=[mixup,mixoe]"], "regularizer=[mixup,mixoe]: mixup and mixoe both do input mixing; keep only "
                                    "one of them"),
    (["data=modular"], "regularizer=mixoe mixes images, but data=modular's inputs are one-hot codes of numbers; "
                       "drop mixoe or train on an image dataset"),
])
def test_bad_values_and_stacks_are_refused_in_one_line(args, message, tmp_path, monkeypatch, capsys):
    stack = [] if any(arg.startswith("regularizer=") for arg in args) else ["regularizer=[mixoe]"]
    assert refused([*stack, *args], tmp_path, monkeypatch, capsys) == message


def test_missing_outlier_files_are_refused_before_a_run_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    message = refused(["regularizer=[mixoe]", "regularizer.mixoe.outliers=mnist", f"data.root={tmp_path / 'empty'}"],
                      tmp_path, monkeypatch, capsys)
    assert message.startswith(f"MNIST files not found: {tmp_path / 'empty' / 'MNIST' / 'raw'}")
