"""mixup / CutMix / label smoothing against timm.data.Mixup with the same inputs and random draws."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data.mixup import Mixup as TimmMixup
from timm.data.mixup import rand_bbox

from regbench.regularizers import create_regularizer, soft_cross_entropy
from regbench.regularizers.mixing import cutmix, cutmix_box, mixup
from regbench.regularizers.label_smoothing import smooth_targets

NUM_CLASSES = 5


def batch(size: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, 8, 8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=gen)
    return images, labels


def test_mixup_matches_timm_with_the_same_draw():
    images, labels = batch()
    timm_mix = TimmMixup(mixup_alpha=0.4, cutmix_alpha=0.0, prob=1.0, num_classes=NUM_CLASSES, label_smoothing=0.0)
    np.random.seed(7)
    expected_x, expected_t = timm_mix(images.clone(), labels)
    np.random.seed(7)
    np.random.rand()  # timm first draws whether to mix at all
    lam = float(np.random.beta(0.4, 0.4))
    mixed_x, mixed_t = mixup(images, F.one_hot(labels, NUM_CLASSES).float(), lam)
    torch.testing.assert_close(mixed_x, expected_x)
    torch.testing.assert_close(mixed_t, expected_t)


def test_cutmix_matches_timm_with_the_same_box():
    images, labels = batch()
    timm_mix = TimmMixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, num_classes=NUM_CLASSES, label_smoothing=0.1,
                         correct_lam=True)
    np.random.seed(3)
    expected_x, expected_t = timm_mix(images.clone(), labels)
    np.random.seed(3)
    np.random.rand()
    lam = float(np.random.beta(1.0, 1.0))
    top, bottom, left, right = rand_bbox(images.shape, lam)
    targets = smooth_targets(F.one_hot(labels, NUM_CLASSES).float(), 0.1)
    mixed_x, mixed_t, _ = cutmix(images, targets, (int(top), int(bottom), int(left), int(right)))
    torch.testing.assert_close(mixed_x, expected_x)
    torch.testing.assert_close(mixed_t, expected_t)


@pytest.mark.parametrize("seed", range(20))
def test_cutmix_lambda_is_the_exact_kept_pixel_fraction(seed):
    rng = random.Random(seed)
    lam_drawn = rng.betavariate(1.0, 1.0)
    size = 5  # odd: the middle sample is its own partner
    images = torch.arange(size, dtype=torch.float32).view(size, 1, 1, 1).expand(size, 1, 9, 7).clone()
    targets = F.one_hot(torch.arange(size) % NUM_CLASSES, NUM_CLASSES).float()
    box = cutmix_box(lam_drawn, 9, 7, rng)
    mixed, mixed_targets, lam = cutmix(images, targets, box)
    kept = (mixed[0] == 0).float().mean().item()  # sample 0 keeps value 0; its partner (4) pastes value 4
    assert lam == pytest.approx(kept)
    torch.testing.assert_close(mixed_targets[0], lam * targets[0] + (1 - lam) * targets[-1])


class FixedCentre:
    """An rng stand-in whose every draw is the middle index."""

    def randrange(self, n: int) -> int:
        return n // 2


def test_cutmix_box_has_the_papers_side_and_the_official_box_is_a_pixel_short_on_odd_sides():
    # 33 x 33, sqrt(1 - lam) = 15.5 / 33: cut = int(15.5) = 15 rows and columns around centre 16. The exact box
    # takes 7 before and 8 after (15, lam = 1 - 225/1089); the official code (clovaai/CutMix-PyTorch rand_bbox)
    # takes 15 // 2 = 7 on both sides (14, lam = 1 - 196/1089). An even cut (16) is the same box in both.
    lam = 1 - (15.5 / 33) ** 2
    assert cutmix_box(lam, 33, 33, FixedCentre()) == (9, 24, 9, 24)
    assert cutmix_box(lam, 33, 33, FixedCentre(), "official") == (9, 23, 9, 23)
    images = torch.zeros(2, 1, 33, 33)
    targets = F.one_hot(torch.tensor([0, 1]), NUM_CLASSES).float()
    exact_lam = cutmix(images, targets, cutmix_box(lam, 33, 33, FixedCentre()))[2]
    official_lam = cutmix(images, targets, cutmix_box(lam, 33, 33, FixedCentre(), "official"))[2]
    assert exact_lam == pytest.approx(1 - 225 / 1089) and official_lam == pytest.approx(1 - 196 / 1089)
    even = 1 - (16.5 / 33) ** 2
    assert cutmix_box(even, 33, 33, FixedCentre()) == cutmix_box(even, 33, 33, FixedCentre(), "official")
    assert cutmix_box(even, 33, 33, FixedCentre()) == (8, 24, 8, 24)


def test_the_cutmix_regularizer_pastes_the_chosen_box():
    images, labels = batch(size=4)
    targets = F.one_hot(labels, NUM_CLASSES).float()
    pasted = {}
    for box in ("exact", "official"):
        reg = create_regularizer("cutmix", seed=5, alpha=1.0, prob=1.0, box=box)
        replay = random.Random(5)
        replay.random()  # the draw that decides whether to mix
        expected = cutmix(images, targets, cutmix_box(replay.betavariate(1.0, 1.0), 8, 8, replay, box))
        pasted[box] = reg.mix_batch(images, targets, torch.arange(4))
        assert torch.equal(pasted[box][0], expected[0]) and torch.equal(pasted[box][1], expected[1])
    # Seed 5 draws an odd cut (rows 0..3 exact, 0..2 official): the switch shows.
    assert not torch.equal(pasted["exact"][0], pasted["official"][0])


def test_cutmix_loss_is_the_weighted_sum_of_the_two_cross_entropies():
    images, labels = batch()
    logits = torch.randn(len(labels), NUM_CLASSES)
    _, mixed_targets, lam = cutmix(images, F.one_hot(labels, NUM_CLASSES).float(), (1, 6, 2, 5))
    expected = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels.flip(0))
    torch.testing.assert_close(soft_cross_entropy(logits, mixed_targets).mean(), expected)


def test_label_smoothing_matches_torch_cross_entropy():
    logits = torch.randn(8, NUM_CLASSES)
    labels = torch.randint(0, NUM_CLASSES, (8,))
    smoothing = create_regularizer("label_smoothing", eps=0.2)
    _, targets = smoothing.mix_batch(torch.zeros(8, 1, 2, 2), F.one_hot(labels, NUM_CLASSES).float(), labels)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.2)
    torch.testing.assert_close(soft_cross_entropy(logits, targets).mean(), expected)


def test_mixing_regularizers_respect_prob_and_are_seeded():
    images, labels = batch(7)
    targets = F.one_hot(labels, NUM_CLASSES).float()
    never = create_regularizer("cutmix", alpha=1.0, prob=0.0)
    same_x, same_t = never.mix_batch(images, targets, labels)
    assert same_x is images and same_t is targets
    first = create_regularizer("mixup", seed=4, alpha=0.2, prob=1.0).mix_batch(images, targets, labels)
    again = create_regularizer("mixup", seed=4, alpha=0.2, prob=1.0).mix_batch(images, targets, labels)
    torch.testing.assert_close(first[0], again[0])
    assert not torch.equal(first[0], images)
