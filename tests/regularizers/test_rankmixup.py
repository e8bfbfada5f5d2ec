"""RankMixup's losses against hand-written versions of the paper's equations on tiny tensors."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from regbench.errors import UserError
from regbench.regularizers import create_regularizer
from regbench.regularizers.rankmixup import margin_ranking_loss, mndcg_loss


def test_margin_ranking_loss_by_hand():
    clean = torch.tensor([[2.0, 0.5, 0.0], [0.1, 0.2, 3.0]])
    mixed = torch.tensor([[[1.5, 0.0, 0.0], [0.0, 1.0, 0.5]]])  # one mix
    relevance = torch.tensor([[0.7, 0.6]])
    margin = 1.0
    # sample 0: max(0, 1.5 - 2.0 + 1) = 0.5 ; sample 1: max(0, 1.0 - 3.0 + 1) = 0
    torch.testing.assert_close(margin_ranking_loss(clean, mixed, relevance, margin), torch.tensor([0.5, 0.0]))
    # A same-class mix (relevance 1) is not ranked, as the official self-mixup mask does.
    masked = margin_ranking_loss(clean, mixed, torch.tensor([[1.0, 0.6]]), margin)
    torch.testing.assert_close(masked, torch.tensor([0.0, 0.0]))
    # The official code multiplies the (B,) mask [0, 1] by the (B, 1) terms [0.5, 0]: a (B, B) product with mean
    # mean(mask) * mean(terms) = 0.5 * 0.25; per sample 0.5 * [0.5, 0], so sample 0 is ranked after all.
    official = margin_ranking_loss(clean, mixed, torch.tensor([[1.0, 0.6]]), margin, mask="official")
    torch.testing.assert_close(official, torch.tensor([0.25, 0.0]))
    torch.testing.assert_close(official.mean(), torch.tensor(0.5 * 0.25))


def ndcg_by_hand(clean_logits, mixed_logits, relevance):
    """Per sample: list [clean, mixes sorted by relevance desc], gains = confidences, ideal gains = relevances."""
    losses = []
    for b in range(clean_logits.shape[0]):
        items = sorted(((relevance[m, b].item(), F.softmax(mixed_logits[m, b], -1).max().item())
                        for m in range(mixed_logits.shape[0])), key=lambda item: -item[0])
        items = [(1.0, F.softmax(clean_logits[b], -1).max().item())] + items
        dcg = sum(conf / math.log2(i + 2) for i, (_, conf) in enumerate(items))
        idcg = sum(rel / math.log2(i + 2) for i, (rel, _) in enumerate(items))
        losses.append(1.0 - min(dcg / idcg, idcg / dcg))
    return torch.tensor(losses)


def test_mndcg_loss_by_hand():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(4, 5, generator=gen) * 3
    mixed = torch.randn(3, 4, 5, generator=gen) * 3
    relevance = torch.tensor([[0.6, 0.9, 1.0, 0.55], [0.8, 0.7, 0.65, 0.95], [0.99, 0.5, 0.75, 0.85]])
    torch.testing.assert_close(mndcg_loss(clean, mixed, relevance), ndcg_by_hand(clean, mixed, relevance))


def test_mndcg_is_zero_when_confidences_equal_relevances():
    # Confidence 1 for the clean sample (huge logit gap) and exactly the relevance for each mix.
    clean = torch.tensor([[100.0, 0.0]])
    rel = torch.tensor([[0.8], [0.6]])
    mixed = torch.log(torch.stack([rel, 1 - rel], dim=-1)).transpose(0, 1).reshape(2, 1, 2)
    torch.testing.assert_close(mndcg_loss(clean, mixed, rel), torch.zeros(1), atol=1e-6, rtol=0)


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("variant,num_mixes", [("mrl", 1), ("mndcg", 3)])
def test_regularizer_adds_weighted_ranking_loss_on_mixed_copies(variant, num_mixes):
    torch.manual_seed(0)
    model = Linear()
    images = torch.randn(6, 1, 2, 2)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    targets = F.one_hot(labels, 3).float()
    reg = create_regularizer("rankmixup", seed=5, variant=variant, mixup_alpha=2.0, loss_weight=0.1, margin=2.0,
                             num_mixes=num_mixes)
    twin = create_regularizer("rankmixup", seed=5, variant=variant, mixup_alpha=2.0, loss_weight=0.1,
                              margin=2.0, num_mixes=num_mixes)
    out_images, out_targets = reg.mix_batch(images, targets, torch.arange(6))
    assert out_images is images and out_targets is targets  # the module trains on the clean batch
    logits = model(images)
    ce = F.cross_entropy(logits, labels, reduction="none")
    total = reg.loss(ce, logits, targets, torch.arange(6), model)
    # Replay the same draws: lam_m ~ Beta(2, 2) and a random partner per mix.
    lams = [twin.rng.betavariate(2.0, 2.0) for _ in range(num_mixes)]
    perms = [torch.randperm(6, generator=twin.perm_generator) for _ in lams]
    mixed_logits = torch.stack([model(lam * images + (1 - lam) * images[p]) for lam, p in zip(lams, perms)])
    relevance = torch.stack([torch.where(labels[p] == labels, 1.0, max(lam, 1 - lam)) for lam, p in zip(lams, perms)])
    if variant == "mrl":
        gap = mixed_logits.max(-1).values - logits.max(-1).values
        ranking = (torch.clamp(gap + 2.0, min=0) * (relevance < 1)).mean(0)
    else:
        ranking = ndcg_by_hand(logits, mixed_logits, relevance)
    torch.testing.assert_close(total, ce + 0.1 * ranking)


def test_unknown_variant_is_one_line():
    with pytest.raises(UserError, match=r"regularizer.rankmixup.variant='ndcg' is invalid: must be one of mrl, mndcg"):
        create_regularizer("rankmixup", variant="ndcg", mixup_alpha=2.0, loss_weight=0.1, margin=2.0, num_mixes=1)
    with pytest.raises(UserError, match=r"regularizer.rankmixup.mrl_mask='broadcast' is invalid: must be one of "
                                        r"per_sample, official"):
        create_regularizer("rankmixup", variant="mrl", mixup_alpha=2.0, loss_weight=0.1, margin=2.0, num_mixes=1,
                           mrl_mask="broadcast")
