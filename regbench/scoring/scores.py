"""The Data Diet scores of one trained network on labelled images (Paul et al., 2021, Section 2):

- EL2N(x, y) = || softmax(f(x)) - onehot(y) ||_2, the norm of the error vector;
- GraNd(x, y) = || grad_w CE(f(x), y) ||_2, the norm of the per-sample loss gradient over all trained weights.

The paper averages each over independent runs (seeds), at an early epoch (regbench.scoring.sweep does that).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

# Images whose per-sample gradients are held at once: one copy of the weights each.
GRAND_CHUNK = 32


def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm of softmax(logits) - onehot(labels)."""
    error = logits.float().softmax(dim=1) - F.one_hot(labels, logits.shape[1]).float()
    return error.norm(dim=1)


def grand(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = GRAND_CHUNK) -> torch.Tensor:
    """Per-sample L2 norm of the cross-entropy gradient with respect to every trainable parameter of `model`, each
    image on its own (vmap over per-sample gradients; the model should be in eval mode, so no image sees another's
    batch statistics)."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def sample_loss(weights, image, label):
        logits = functional_call(model, {**weights, **buffers}, (image.unsqueeze(0),))
        return F.cross_entropy(logits, label.unsqueeze(0))

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    norms = []
    for start in range(0, len(labels), chunk):
        grads = per_sample_grads(params, images[start:start + chunk], labels[start:start + chunk])
        squared = sum(g.flatten(1).pow(2).sum(dim=1) for g in grads.values())
        norms.append(squared.sqrt())
    return torch.cat(norms) if norms else torch.zeros(0)


@torch.no_grad()
def el2n_in_batches(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([el2n(model(images[i:i + batch_size]), labels[i:i + batch_size])
                      for i in range(0, len(labels), batch_size)])
