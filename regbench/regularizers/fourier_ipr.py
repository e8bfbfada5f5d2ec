"""The inverse participation ratio of weights in the Fourier basis over Z_p (Doshi, Das, He & Gromov, "To grok or
not to grok", ICLR 2024, Eqs. 3-4): periodic (generalizing) neurons have IPR near 1, memorizing ones near its
minimum.

IPR(u) = ||u~||_4^4 / ||u~||_2^4 (r = 2, footnote 4), u~ the discrete Fourier transform of u. As in the authors'
code (d-doshi/Grokking), u~ is the one-sided transform of the real vector (numpy's rfft: frequencies 0..floor(p/2)),
so a pure cosine of any frequency, and a constant, give exactly 1 and a one-hot vector (a flat spectrum) gives the
minimum 1 / (floor(p/2) + 1). (The paper's stated range [1/p, 1] is the two-sided transform's, where a cosine
splits its power between +k and -k and gives 1/2.)"""
from __future__ import annotations

import torch


def fourier_ipr(vectors: torch.Tensor) -> torch.Tensor:
    """IPR of each length-p vector along the last axis; a zero vector (a dead neuron) has no spectrum: IPR 0."""
    power = torch.fft.rfft(vectors.double(), dim=-1).abs() ** 2
    total = power.sum(dim=-1)
    ipr = (power ** 2).sum(dim=-1) / total.clamp_min(torch.finfo(torch.float64).tiny) ** 2
    return torch.where(total > 0, ipr, torch.zeros_like(ipr))


def per_neuron_ipr(input_weight: torch.Tensor, output_weight: torch.Tensor) -> torch.Tensor:
    """IPR_k = (IPR(U_k.) + IPR(V_k.) + IPR(W_.k)) / 3 (Eq. 4) for the (N, 2p) first-layer weight [U V], whose
    row k reads neuron k's inputs e_m (+) e_n, and the (p, N) output weight W, whose column k is its output."""
    p = output_weight.shape[0]
    if input_weight.shape[1] != 2 * p:
        raise ValueError(f"the first layer reads {input_weight.shape[1]} inputs; the IPR needs 2p = {2 * p}")
    u, v = input_weight[:, :p], input_weight[:, p:]
    return (fourier_ipr(u) + fourier_ipr(v) + fourier_ipr(output_weight.T)) / 3
