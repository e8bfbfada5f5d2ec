"""The evaluation registry's declared entries (`eval=[...]`): each is run after training on the final and the
best-validation model and returns metrics for metrics.json."""
from typing import Any, Mapping

from regbench.errors import UserError
from regbench.registry import REQUIRED, Entry, Registry

# Datasets an OOD evaluation may load as its out-distribution: those held in memory as uint8 tensors (the folder
# datasets stream from disk; modular arithmetic is not images).
OOD_DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "svhn", "synthetic")
# In-distribution scores, each higher for images more like the training data. `method` is the score of the trained
# OOD method in the regularizer stack (one of OOD_METHODS).
OOD_SCORES = ("msp", "max_logit", "energy", "mahalanobis", "method")
# Regularizers that train an OOD detector and define its score (Regularizer.ood_score).
OOD_METHODS: tuple[str, ...] = (
    "abet",
)
# CIFAR-10-C's corruptions regbench builds on the fly (regbench/evaluation/corruption_ops.py), each at severities 1..5.
# saturate changes HSV saturation, so it takes colour images only.
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "contrast", "brightness", "saturate",
               "pixelate")
# Datasets whose test images are held in memory as uint8 tensors, which the shift evaluations corrupt and reorder.
SHIFT_DATASETS = (*OOD_DATASETS, "colored_digits", "colored_mnist")

EVALUATIONS = Registry("evaluation", "eval", context=("data", "seed"), entries={
    "corruptions": Entry("regbench.evaluation.corruptions", {"names": REQUIRED, "severities": REQUIRED}),
    "farms": Entry("regbench.evaluation.farms", {
        "aspect_ratio": REQUIRED, "xmin": REQUIRED, "min_eigenvalues": REQUIRED}),
    "lame": Entry("regbench.evaluation.lame", {
        "knn": REQUIRED, "max_steps": REQUIRED, "batch_size": REQUIRED, "corruption": REQUIRED, "severity": REQUIRED}),
    "ood": Entry("regbench.evaluation.ood", {
        "datasets": REQUIRED, "scores": REQUIRED, "energy_temperature": REQUIRED, "mahalanobis_epsilon": REQUIRED,
        "max_images": REQUIRED}),
})


def check_method_score(cfg: Mapping[str, Any]) -> None:
    """eval.ood.scores may hold `method` only when the regularizer stack trains an OOD method."""
    scores = ((cfg["eval"].get("ood") or {}).get("scores")) or ()
    if "method" in scores and not any(name in OOD_METHODS for name in cfg["regularizer"]):
        raise UserError(f"eval.ood.scores holds 'method', but regularizer={list(cfg['regularizer'])} trains no OOD "
                        f"method: add one of {', '.join(OOD_METHODS) or '(none registered)'} to regularizer or drop "
                        f"'method' from eval.ood.scores")
