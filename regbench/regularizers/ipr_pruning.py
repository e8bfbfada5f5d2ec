"""The grokking study's measure and pruning (Doshi, Das, He & Gromov, "To grok or not to grok", ICLR 2024, Sec. 2.1):
after training, the per-neuron Fourier IPR of the quadratic MLP (regbench.regularizers.fourier_ipr), and the network's
accuracy on the test set and on the clean and the corrupted training pairs as its neurons are pruned one group after
another, lowest IPR first (memorizing neurons: corrupted accuracy falls, test accuracy holds) and highest IPR first
(generalizing neurons: test accuracy falls). Training itself is unchanged."""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.regularizers.fourier_ipr import per_neuron_ipr
from regbench.regularizers.base import Regularizer, evaluated_network
from regbench.specs.regularizers import REGULARIZERS

# Pruning orders: the paper's Figure 6 left (lowest IPR first) and right (highest first).
ORDERS = ("lowest_first", "highest_first")


def output_linear(net: nn.Module) -> nn.Linear:
    """W: the head, or the last linear layer of a head a regularizer wrapped (dropout before it)."""
    linears = [m for m in net.head.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def network_ipr(net: nn.Module) -> torch.Tensor:
    return per_neuron_ipr(net.hidden.weight.detach(), output_linear(net).weight.detach())


def pruned_copy(net: nn.Module, neurons: torch.Tensor) -> nn.Module:
    """A copy with the `neurons` removed as the authors' code removes them: their rows of W_in (U and V) and their
    columns of W set to zero; every other weight as trained."""
    pruned = copy.deepcopy(net)
    with torch.no_grad():
        pruned.hidden.weight[neurons] = 0
        output_linear(pruned).weight[:, neurons] = 0
    return pruned


def ipr_histogram(ipr: torch.Tensor, bins: int) -> dict[str, list]:
    counts = torch.histc(ipr.float(), bins=bins, min=0.0, max=1.0)
    edges = torch.linspace(0.0, 1.0, bins + 1)
    return {"edges": [round(e, 6) for e in edges.tolist()], "counts": [int(c) for c in counts.tolist()]}


@torch.no_grad()
def split_accuracies(net: nn.Module, test_batches: Iterable, train_batches: Iterable,
                     is_noisy: torch.Tensor | None) -> dict[str, float | None]:
    """Test accuracy, and training accuracy against the labels trained on: overall, on the clean pairs and on the
    corrupted pairs (None without label noise, or where a part is empty)."""
    device = next(net.parameters()).device
    test_correct = test_seen = 0
    for images, labels, _ in test_batches:
        test_correct += int((net(images.to(device)).argmax(-1) == labels.to(device)).sum())
        test_seen += labels.shape[0]
    hits, corrupted = [], []
    for images, labels, index in train_batches:
        hits.append((net(images.to(device)).argmax(-1) == labels.to(device)).cpu())
        corrupted.append(is_noisy[index].cpu() if is_noisy is not None else torch.zeros(len(labels), dtype=torch.bool))
    hits, corrupted = torch.cat(hits), torch.cat(corrupted)

    def mean(mask: torch.Tensor) -> float | None:
        return float(hits[mask].double().mean()) if mask.any() else None

    return {"test_acc": test_correct / max(test_seen, 1), "train_acc": mean(torch.ones_like(hits)),
            "train_clean_acc": mean(~corrupted),
            "train_corrupted_acc": mean(corrupted) if is_noisy is not None else None}


@REGULARIZERS.register("ipr_pruning")
class IPRPruning(Regularizer):
    name = "ipr_pruning"

    def __init__(self, *, fractions: Sequence[float], high_ipr: float, bins: int):
        self.fractions = sorted({float(f) for f in fractions})
        self.high_ipr, self.bins = float(high_ipr), bins

    def check_backbone(self, backbone: Mapping[str, Any]) -> None:
        if backbone["name"] != "quadratic_mlp":
            raise UserError(f"regularizer=ipr_pruning measures the quadratic MLP's neurons, not backbone="
                            f"{backbone['name']}; use backbone=quadratic_mlp")

    def check_stack(self, run: Mapping[str, Any], others: Sequence[Regularizer]) -> None:
        if run["data"]["name"] != "modular":
            raise UserError(f"regularizer=ipr_pruning takes the Fourier transform over Z_p of modular's one-hot "
                            f"inputs, not data={run['data']['name']}; use data=modular")
        # A reparameterized weight is computed from other tensors: zeroing it would prune nothing.
        for other in others:
            if other.wraps_after_others:
                raise UserError(f"regularizer=ipr_pruning cannot be stacked with {other.name}: it reparameterizes "
                                f"the weights that pruning zeroes")

    def train_report(self, model: nn.Module, test_batches: Iterable, train_batches: Callable[[], Iterable],
                     is_noisy: torch.Tensor | None) -> dict[str, Any]:
        net = evaluated_network(model)
        was_training = net.training
        net.eval()
        try:
            ipr = network_ipr(net)
            train = train_batches()
            curves = {order: self.pruning_curve(net, ipr, order, test_batches, train, is_noisy) for order in ORDERS}
        finally:
            net.train(was_training)
        return {"ipr": {"mean": float(ipr.mean()), "high_threshold": self.high_ipr,
                        "high_fraction": float((ipr >= self.high_ipr).double().mean()),
                        "histogram": ipr_histogram(ipr, self.bins)},
                "ipr_pruning": curves}

    def pruning_curve(self, net: nn.Module, ipr: torch.Tensor, order: str, test_batches: Iterable,
                      train_batches: Iterable, is_noisy: torch.Tensor | None) -> list[dict[str, Any]]:
        ranked = torch.argsort(ipr, descending=order == "highest_first", stable=True)
        width = len(ipr)
        rows = []
        for fraction in (0.0, *self.fractions):
            count = round(fraction * width)
            pruned = pruned_copy(net, ranked[:count].to(net.hidden.weight.device))
            rows.append({"fraction": fraction, "pruned": count,
                         **split_accuracies(pruned, test_batches, train_batches, is_noisy)})
        return rows
