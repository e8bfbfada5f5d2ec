"""RankMixup (Noh et al., ICCV 2023): CE on the clean batch plus a ranking loss that asks mixed samples to be
less confident than clean ones (MRL), or confidences ordered like the mixing coefficients (M-NDCG).

Follows the official code (cvlab-yonsei/RankMixup): `num_mixes` mixup copies of the batch, each with its own
lam ~ Beta(alpha, alpha) and a random partner permutation, go through the network in one extra forward pass.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from regbench.regularizers.base import Regularizer
from regbench.specs.regularizers import REGULARIZERS

def margin_ranking_loss(clean_logits: torch.Tensor, mixed_logits: torch.Tensor, relevance: torch.Tensor,
                        margin: float, mask: str = "per_sample") -> torch.Tensor:
    """MRL per sample: mean over mixes of max(0, max_c z_mix - max_c z_clean + margin), masking mixes whose
    label is not actually mixed (relevance 1: same-class partner) as `mask` (specs MRL_MASKS) says.
    Logits (B, C) and (M, B, C); relevance (M, B)."""
    gap = mixed_logits.max(dim=-1).values - clean_logits.max(dim=-1).values
    real_mix = (relevance < 1).to(gap.dtype)
    if mask == "official":
        real_mix = real_mix.mean(dim=1, keepdim=True)
    return (real_mix * F.relu(gap + margin)).mean(dim=0)


def mndcg_loss(clean_logits: torch.Tensor, mixed_logits: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """M-NDCG per sample: 1 - NDCG of the confidences [clean, mixes sorted by relevance] against the relevances
    [1, max mixed-label weight ...], with NDCG folded to <= 1 (min(DCG/IDCG, IDCG/DCG)) as in the official code."""
    clean_conf = clean_logits.softmax(dim=-1).max(dim=-1).values                     # (B,)
    mixed_conf = mixed_logits.softmax(dim=-1).max(dim=-1).values.t()                 # (B, M)
    relevance = relevance.t()
    order = torch.argsort(relevance, dim=1, descending=True, stable=True)
    conf = torch.cat([clean_conf[:, None], mixed_conf.gather(1, order)], dim=1)
    ideal = torch.cat([torch.ones_like(clean_conf)[:, None], relevance.gather(1, order)], dim=1)
    discount = torch.log2(torch.arange(2, conf.shape[1] + 2, device=conf.device, dtype=conf.dtype))
    dcg, idcg = (conf / discount).sum(dim=1), (ideal / discount).sum(dim=1)
    return 1.0 - torch.where(idcg > dcg, dcg / idcg, idcg / dcg)


@REGULARIZERS.register("rankmixup")
class RankMixup(Regularizer):
    name = "rankmixup"

    def __init__(self, *, variant: str, mixup_alpha: float, loss_weight: float, margin: float, num_mixes: int,
                 seed: int, mrl_mask: str):
        self.variant, self.mixup_alpha, self.loss_weight = variant, mixup_alpha, loss_weight
        self.margin, self.num_mixes, self.mrl_mask = margin, num_mixes, mrl_mask
        self.rng = random.Random(seed)
        self.perm_generator = torch.Generator().manual_seed(seed)
        self._clean: tuple[torch.Tensor, torch.Tensor] | None = None

    def mix_batch(self, images, targets, index):
        # The module trains on the clean batch; the mixed copies are made and scored in `loss`.
        self._clean = (images, targets)
        return images, targets

    def mixed_copies(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M*B, ...) mixed images and the (M, B) relevance: the largest weight of each mixed one-hot label."""
        batch = images.shape[0]
        lams = [self.rng.betavariate(self.mixup_alpha, self.mixup_alpha) for _ in range(self.num_mixes)]
        perms = [torch.randperm(batch, generator=self.perm_generator).to(images.device) for _ in lams]
        mixed = torch.cat([lam * images + (1.0 - lam) * images[perm] for lam, perm in zip(lams, perms)])
        relevance = torch.stack([torch.where(labels[perm] == labels, 1.0, max(lam, 1.0 - lam))
                                 for lam, perm in zip(lams, perms)]).to(images.dtype)
        return mixed, relevance

    def loss(self, per_sample, logits, targets, index, model):
        images, clean_targets = self._clean
        self._clean = None
        mixed, relevance = self.mixed_copies(images, clean_targets.argmax(dim=-1))
        mixed_logits = model(mixed).view(self.num_mixes, images.shape[0], -1)
        if self.variant == "mrl":
            ranking = margin_ranking_loss(logits, mixed_logits, relevance, self.margin, self.mrl_mask)
        else:
            ranking = mndcg_loss(logits, mixed_logits, relevance)
        return per_sample + self.loss_weight * ranking
