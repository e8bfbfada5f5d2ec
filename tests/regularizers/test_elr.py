"""ELR (Liu et al., 2020) against the paper's equations, computed by hand in numpy."""
import numpy as np
import pytest
import torch

from regbench.regularizers import create_regularizer
from regbench.regularizers.noisy_labels import elr_penalty, elr_probabilities

BETA, LAM = 0.7, 3.0


def clamped_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.clip(e / e.sum(axis=1, keepdims=True), 1e-4, 1 - 1e-4)


def normalized(p: np.ndarray) -> np.ndarray:
    return p / p.sum(axis=1, keepdims=True)


def test_targets_follow_the_recursion_over_two_steps():
    elr = create_regularizer("elr", lam=LAM, beta=BETA)
    gen = torch.Generator().manual_seed(0)
    logits_1, logits_2 = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    index_1, index_2 = torch.tensor([5, 0, 2]), torch.tensor([0, 5, 1])
    zeros = torch.zeros(3)

    elr.loss(zeros, logits_1, None, index_1, None)
    memory = np.zeros((6, 4))
    memory[[5, 0, 2]] = (1 - BETA) * normalized(clamped_softmax(logits_1.numpy()))
    np.testing.assert_allclose(elr.targets.numpy(), memory, rtol=1e-5, atol=1e-7)

    loss = elr.loss(zeros, logits_2, None, index_2, None)
    p_2 = clamped_softmax(logits_2.numpy())
    memory[[0, 5, 1]] = BETA * memory[[0, 5, 1]] + (1 - BETA) * normalized(p_2)
    np.testing.assert_allclose(elr.targets.numpy(), memory, rtol=1e-5, atol=1e-7)
    # The loss uses the updated targets and the clamped (not renormalized) probabilities, as the official code.
    expected = LAM * np.log(1 - (memory[[0, 5, 1]] * p_2).sum(axis=1))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_gradient_matches_the_closed_form_and_pulls_p_toward_t():
    logits = torch.tensor([[0.3, -0.2, 1.0, 0.1], [0.0, 0.5, -1.0, 0.2]], requires_grad=True)
    t = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.8, 0.1]])
    elr_penalty(elr_probabilities(logits), t).sum().backward()

    # d/dz_c log(1 - <t, p>) = p_c (<t, p> - t_c) / (1 - <t, p>)   (Liu et al., 2020, sec. 4.2)
    p = torch.softmax(logits.detach(), dim=1)
    s = (t * p).sum(dim=1, keepdim=True)
    torch.testing.assert_close(logits.grad, p * (s - t) / (1 - s))

    # A gradient-descent step raises <t, p> and the probability of each target's main class.
    stepped = torch.softmax(logits.detach() - 0.5 * logits.grad, dim=1)
    assert ((t * stepped).sum(dim=1) > s.squeeze(1)).all()
    assert stepped[0, 0] > p[0, 0] and stepped[1, 2] > p[1, 2]
    assert (logits.grad[0, 0] < 0) and (logits.grad[1, 2] < 0)


def test_memory_survives_a_state_dict_round_trip():
    elr = create_regularizer("elr", lam=LAM, beta=BETA)
    elr.loss(torch.zeros(2), torch.randn(2, 3), None, torch.tensor([4, 1]), None)
    fresh = create_regularizer("elr", lam=LAM, beta=BETA)
    fresh.load_state_dict(elr.state_dict())
    torch.testing.assert_close(fresh.targets, elr.targets)


@pytest.mark.parametrize("params, message", [
    ({"lam": -1.0, "beta": 0.7}, "regularizer.elr.lam=-1.0 is invalid"),
    ({"lam": 3.0, "beta": 1.0}, "regularizer.elr.beta=1.0 is invalid"),
])
def test_bad_values_fail_with_one_line(params, message):
    from regbench.errors import UserError

    with pytest.raises(UserError, match=message) as err:
        create_regularizer("elr", **params)
    assert "\n" not in str(err.value)
