"""The soup recipes and the recomputed norm statistics, against hand-computed cases: the uniform soup's exact
means, the greedy soup's order and its >= acceptance rule (Wortsman et al. 2022, Recipe 1) with a fake
evaluator, and BatchNorm statistics equal to the training data's."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.norms.evonorm import EvoNormB0
from regbench.soups.batch_stats import check_recomputable, recompute_batch_statistics
from regbench.soups.recipes import GreedyStep, greedy_soup, uniform_average


def test_the_uniform_soup_is_the_exact_mean_of_every_float_tensor_and_keeps_the_first_counter():
    states = [{"w": torch.tensor([1.0, 2.0]), "bn.running_var": torch.tensor([1.0]),
               "bn.num_batches_tracked": torch.tensor(5), "half": torch.tensor([1.0], dtype=torch.float16)},
              {"w": torch.tensor([3.0, -2.0]), "bn.running_var": torch.tensor([2.0]),
               "bn.num_batches_tracked": torch.tensor(7), "half": torch.tensor([2.0], dtype=torch.float16)},
              {"w": torch.tensor([5.0, 3.0]), "bn.running_var": torch.tensor([6.0]),
               "bn.num_batches_tracked": torch.tensor(9), "half": torch.tensor([4.0], dtype=torch.float16)}]
    soup = uniform_average(states)
    assert torch.equal(soup["w"], torch.tensor([3.0, 1.0]))
    assert torch.equal(soup["bn.running_var"], torch.tensor([3.0]))
    assert soup["bn.num_batches_tracked"].item() == 5 and soup["bn.num_batches_tracked"].dtype == torch.int64
    assert soup["half"].dtype == torch.float16 and soup["half"].item() == pytest.approx(7 / 3, abs=1e-3)
    assert states[0]["w"].tolist() == [1.0, 2.0]  # the ingredients are left as they were


def test_the_greedy_soup_adds_in_order_of_validation_accuracy_while_accuracy_does_not_drop():
    # Ingredients ranked 2 (0.9), 0 (0.8), 3 (0.7), 1 (0.6). Soups: {2,0} 0.9 ties the best alone: kept (>=);
    # {2,0,3} 0.85 drops: left out; {2,0,1} 0.95 rises: kept.
    soups = {(0, 2): 0.9, (0, 2, 3): 0.85, (0, 1, 2): 0.95}
    asked = []

    def soup_val_acc(positions):
        asked.append(list(positions))
        return soups[tuple(sorted(positions))]

    chosen, steps = greedy_soup([0.8, 0.6, 0.9, 0.7], soup_val_acc)
    assert chosen == [2, 0, 1]
    assert asked == [[2, 0], [2, 0, 3], [2, 0, 1]]
    assert steps == [GreedyStep(0, 0.9, True), GreedyStep(3, 0.85, False), GreedyStep(1, 0.95, True)]


def test_a_greedy_soup_whose_every_addition_hurts_is_the_best_ingredient_alone():
    chosen, steps = greedy_soup([0.5, 0.7], lambda positions: 0.69)
    assert chosen == [1] and steps == [GreedyStep(0, 0.69, False)]


def test_recomputed_batchnorm_statistics_are_the_training_datas():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Flatten(), nn.Linear(12, 2))
    model[1].running_mean.fill_(100.0)  # averaged statistics, to be replaced
    model[1].running_var.fill_(100.0)
    images = torch.randn(12, 1, 2, 2) * 3 + 1
    batches = [(images[i:i + 4], torch.zeros(4, dtype=torch.long)) for i in range(0, 12, 4)]
    assert recompute_batch_statistics(model, batches) == 1
    features = model[0](images).detach()
    per_channel = features.transpose(0, 1).flatten(1)
    # Equal batches: the cumulative average of the batch means is the mean over the whole training split ...
    assert torch.allclose(model[1].running_mean, per_channel.mean(dim=1), atol=1e-5)
    # ... and of the batches' unbiased variances (PyTorch's running variance) their mean.
    batch_vars = torch.stack([model[0](b).detach().transpose(0, 1).flatten(1).var(dim=1) for b, _ in batches])
    assert torch.allclose(model[1].running_var, batch_vars.mean(dim=0), atol=1e-5)
    assert model[1].momentum == 0.1 and model.training  # settings restored
    # One batch of the whole split: exactly the training data's mean and unbiased variance.
    recompute_batch_statistics(model, [(images, None)])
    assert torch.allclose(model[1].running_var, per_channel.var(dim=1), atol=1e-5)


def test_a_network_without_batch_statistics_reads_no_batch():
    assert recompute_batch_statistics(nn.Linear(2, 2), iter(())) == 0


def test_norms_whose_statistics_a_soup_cannot_recompute_are_refused():
    with pytest.raises(UserError, match=r"^norm='evonorm_b0' keeps running statistics in 0 \(EvoNormB0\)"):
        check_recomputable(nn.Sequential(EvoNormB0(4, True, 0.1, 1e-5)), "evonorm_b0")
    check_recomputable(nn.Sequential(nn.BatchNorm2d(4), nn.GroupNorm(2, 4)), "batchnorm")
