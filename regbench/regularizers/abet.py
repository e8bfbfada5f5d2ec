"""AbeT (LeVine, Pikus, Phillips, Norman, Amat Gil & Hendryx, "Out-of-Distribution Detection & Applications With
Ablated Learned Temperature Energy", ICLR 2024): the classifier divides its logit numerators h(x) by a learned
per-sample temperature T(x) = sigmoid(BN(w . z + b)) of the penultimate features z (GODIN's, Hsu et al. 2020) and is
trained with plain cross-entropy on h(x) / T(x). Its OOD score is the energy score of those logits with the forefront
temperature ablated: log sum_i exp(h_i(x) / T(x)) instead of T(x) log sum_i exp(h_i(x) / T(x)), higher for
in-distribution inputs. The official code (github.com/anonymousoodauthor/abet, nets.py) takes h as GODIN's cosine
similarity between the features and each class vector, and classifies (test accuracy) by the argmax of h / T."""
from __future__ import annotations

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.regularizers.base import Regularizer
from regbench.specs.regularizers import REGULARIZERS

# The official floor under the learned temperature: T stays > 0 where the sigmoid underflows to 0.
TEMPERATURE_FLOOR = 1e-12
# The official cosine head's guard against zero vectors: v / (|v| + 1e-4), features and class vectors alike.
COSINE_EPS = 1e-4


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / (matrix.norm(dim=1, keepdim=True) + COSINE_EPS)


class CosineNumerator(nn.Module):
    """GODIN's cosine logit numerators h_i(z) = cos(w_i, z): (B, D) features -> (B, C) values in [-1, 1]."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, num_features))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")  # the official head's initialization

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return unit_rows(features) @ unit_rows(self.weight).T


class LearnedTemperatureHead(nn.Module):
    """(B, D) features -> the (B, C) logits h(z) / T(z), in training and evaluation alike."""

    def __init__(self, numerator: nn.Module, num_features: int):
        super().__init__()
        self.numerator = numerator
        self.temperature = nn.Sequential(nn.Linear(num_features, 1), nn.BatchNorm1d(1), nn.Sigmoid())

    def temperatures(self, features: torch.Tensor) -> torch.Tensor:
        """T(z), (B, 1), in (0, 1]."""
        return self.temperature(features) + TEMPERATURE_FLOOR

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.numerator(features) / self.temperatures(features)


def ablated_energy_score(logits: torch.Tensor) -> torch.Tensor:
    """AbeT's score of the (B, C) tempered logits h / T: log sum_i exp(h_i / T), without the energy's forefront T."""
    return torch.logsumexp(logits.double(), dim=1)


@REGULARIZERS.register("abet")
class AbeT(Regularizer):
    name = "abet"

    def __init__(self, *, numerator: str, seed: int):
        self.numerator = numerator

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """Put the learned temperature around the classifier: the head itself, or the last layer of a head that a
        feature dropout wrapped (Sequential(dropout, classifier)), so the list order does not matter."""
        head = getattr(model, "head", None)
        inside = isinstance(head, nn.Sequential)
        classifier = head[-1] if inside else head
        if not isinstance(classifier, nn.Linear):
            raise UserError(f"regularizer=abet needs a backbone whose head is a linear classifier; "
                            f"{type(model).__name__}'s is {type(classifier).__name__}")
        numerator = (CosineNumerator(classifier.in_features, classifier.out_features)
                     if self.numerator == "cosine" else classifier)
        wrapped = LearnedTemperatureHead(numerator, classifier.in_features).to(classifier.weight.device)
        if inside:
            head[-1] = wrapped
        else:
            model.head = wrapped
        return model

    def ood_score(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return ablated_energy_score(network(images))


__all__ = ["AbeT", "CosineNumerator", "LearnedTemperatureHead", "ablated_energy_score"]
