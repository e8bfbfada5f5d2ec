"""mixup, cutmix and mixup_cutmix against timm.data.Mixup, replaying timm's np.random draws exactly."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup

from regbench.regularizers import create_regularizer, soft_cross_entropy
from regbench.regularizers.mixing import cutmix, cutmix_box

NUM_CLASSES = 5


class NumpyDraws:
    """The random.Random methods our regularizers call, served from np.random in timm's draw order."""

    def random(self):
        return np.random.rand()

    def betavariate(self, alpha, beta):
        return np.random.beta(alpha, beta)

    def randrange(self, n):
        return np.random.randint(0, n)


def batch(size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, 12, 10, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=gen)
    return images, labels


def ours(name, params, images, labels, np_seed):
    reg = create_regularizer(name, **params)
    reg.rng = NumpyDraws()
    np.random.seed(np_seed)
    return reg.mix_batch(images.clone(), F.one_hot(labels, NUM_CLASSES).float(), torch.arange(len(labels)))


def timms(timm_params, images, labels, np_seed):
    np.random.seed(np_seed)
    return Mixup(num_classes=NUM_CLASSES, mode="batch", **timm_params)(images.clone(), labels)


CASES = [
    ("mixup", {"alpha": 0.4, "prob": 0.7}, {"mixup_alpha": 0.4, "cutmix_alpha": 0.0, "prob": 0.7,
                                            "label_smoothing": 0.0}),
    ("cutmix", {"alpha": 1.0, "prob": 0.7}, {"mixup_alpha": 0.0, "cutmix_alpha": 1.0, "prob": 0.7,
                                             "label_smoothing": 0.0}),
    ("mixup_cutmix", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.8, "switch_prob": 0.5,
                      "label_smoothing": 0.1},
     {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.8, "switch_prob": 0.5, "label_smoothing": 0.1}),
]


@pytest.mark.parametrize("name,params,timm_params", CASES, ids=[c[0] for c in CASES])
def test_matches_timm_mixup_draw_for_draw(name, params, timm_params):
    images, labels = batch()
    kinds = set()
    for np_seed in range(40):
        mixed, targets = ours(name, params, images, labels, np_seed)
        ref_images, ref_targets = timms(timm_params, images, labels, np_seed)
        assert torch.equal(mixed, ref_images), f"np seed {np_seed}"
        torch.testing.assert_close(targets, ref_targets, rtol=1e-6, atol=1e-7)
        changed = ~torch.isclose(mixed, images)
        kinds.add("none" if not changed.any() else "box" if changed.float().mean() < 0.999 else "blend")
    # The seeds exercise every branch the technique has (unmixed batches, and mixup and/or cutmix).
    expected = {"mixup": {"none", "blend"}, "cutmix": {"none", "box"}, "mixup_cutmix": {"none", "blend", "box"}}
    assert expected[name] <= kinds


def test_mixup_cutmix_smoothing_matches_timm_mixup_target():
    images, labels = batch()
    params = dict(CASES[2][1], prob=0.0)  # never mixed: the targets are only smoothed
    _, targets = ours("mixup_cutmix", params, images, labels, 0)
    eps, c = 0.1, NUM_CLASSES
    expected = torch.full((len(labels), c), eps / c).scatter_(1, labels[:, None], 1 - eps + eps / c)
    torch.testing.assert_close(targets, expected)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "mixup_cutmix"])
def test_odd_batch_pairs_the_middle_sample_with_itself(name):
    images, labels = batch(size=7)
    params = {"mixup": {"alpha": 1.0, "prob": 1.0}, "cutmix": {"alpha": 1.0, "prob": 1.0},
              "mixup_cutmix": dict(CASES[2][1], label_smoothing=0.0, prob=1.0)}[name]
    onehot = F.one_hot(labels, NUM_CLASSES).float()
    for seed in range(5):
        reg = create_regularizer(name, seed=seed, **params)
        mixed, targets = reg.mix_batch(images.clone(), onehot, torch.arange(7))
        assert mixed.shape == images.shape
        torch.testing.assert_close(mixed[3], images[3])
        torch.testing.assert_close(targets[3], onehot[3])
        # Sample i is mixed with sample 6 - i, with weights summing to one.
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(7))
        assert set(targets[0].nonzero().flatten().tolist()) <= {labels[0].item(), labels[6].item()}


def test_cutmix_lambda_is_the_exact_kept_pixel_fraction():
    import random

    images = torch.arange(6.0)[:, None, None, None].expand(6, 1, 9, 7).clone()  # image i is all i
    onehot = F.one_hot(torch.arange(6) % NUM_CLASSES, NUM_CLASSES).float()
    rng = random.Random(0)
    for _ in range(50):
        box = cutmix_box(rng.betavariate(1.0, 1.0), 9, 7, rng)
        mixed, targets, lam = cutmix(images, onehot, box)
        pasted = (mixed != images).float().mean(dim=(1, 2, 3))  # partners differ, so every pasted pixel shows
        torch.testing.assert_close(pasted, torch.full((6,), 1 - lam))
        torch.testing.assert_close(targets, lam * onehot + (1 - lam) * onehot.flip(0))


def test_mixed_soft_loss_is_the_lambda_weighted_sum_of_the_two_hard_losses():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, NUM_CLASSES, generator=gen)
    y_a = torch.randint(0, NUM_CLASSES, (6,), generator=gen)
    y_b = y_a.flip(0)
    for lam in (0.0, 0.3, 0.77, 1.0):
        targets = lam * F.one_hot(y_a, NUM_CLASSES) + (1 - lam) * F.one_hot(y_b, NUM_CLASSES)
        expected = lam * F.cross_entropy(logits, y_a, reduction="none") + \
            (1 - lam) * F.cross_entropy(logits, y_b, reduction="none")
        torch.testing.assert_close(soft_cross_entropy(logits, targets.float()), expected)
