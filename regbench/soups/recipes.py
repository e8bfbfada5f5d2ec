"""The soup recipes of Wortsman et al. (2022): the uniform soup averages every ingredient's weights; the greedy
soup (their Recipe 1) takes the ingredients in decreasing order of held-out validation accuracy and keeps each
one whose addition leaves the soup's validation accuracy at least as high (>=) as without it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

State = dict[str, torch.Tensor]


def uniform_average(states: Sequence[State]) -> State:
    """The mean of every floating-point tensor (parameters and norm running statistics alike), accumulated in
    float64. Integer tensors (BatchNorm's num_batches_tracked) are counters, not weights: the first ingredient's
    is kept (the soup's statistics are recomputed afterwards, which resets it)."""
    first = states[0]
    averaged: State = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            total = sum(state[key].double() for state in states)
            averaged[key] = (total / len(states)).to(tensor.dtype)
        else:
            averaged[key] = tensor.clone()
    return averaged


@dataclass(frozen=True)
class GreedyStep:
    candidate: int  # the ingredient's position in the list given
    val_acc: float  # the soup's validation accuracy with this candidate added
    kept: bool


def greedy_soup(ingredient_val_acc: Sequence[float], soup_val_acc: Callable[[list[int]], float]
                ) -> tuple[list[int], list[GreedyStep]]:
    """The greedy soup's ingredients (positions into the list) and its steps. `ingredient_val_acc` ranks the
    ingredients (a stable sort: ties keep their given order); `soup_val_acc(positions)` evaluates the uniform
    soup of those ingredients on the validation split. The best ingredient starts the soup."""
    order = sorted(range(len(ingredient_val_acc)), key=lambda i: -ingredient_val_acc[i])
    chosen = [order[0]]
    best = ingredient_val_acc[order[0]]
    steps: list[GreedyStep] = []
    for candidate in order[1:]:
        accuracy = soup_val_acc([*chosen, candidate])
        kept = accuracy >= best
        steps.append(GreedyStep(candidate, accuracy, kept))
        if kept:
            chosen.append(candidate)
            best = accuracy
    return chosen, steps
