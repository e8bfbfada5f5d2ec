"""The evaluation registry's declared entries (`eval=[...]`): each is run after training on the final and the
best-validation model and returns metrics for metrics.json."""
from regbench.registry import REQUIRED, Entry, Registry

# Datasets an OOD evaluation may load as its out-distribution: those held in memory as uint8 tensors (the folder
# datasets stream from disk; modular arithmetic is not images).
OOD_DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "svhn", "synthetic")
# In-distribution scores, each higher for images more like the training data.
OOD_SCORES = ("msp", "max_logit", "energy", "mahalanobis")

EVALUATIONS = Registry("evaluation", "eval", context=("data", "seed"), entries={
    "farms": Entry("regbench.evaluation.farms", {
        "aspect_ratio": REQUIRED, "xmin": REQUIRED, "min_eigenvalues": REQUIRED}),
    "ood": Entry("regbench.evaluation.ood", {
        "datasets": REQUIRED, "scores": REQUIRED, "energy_temperature": REQUIRED, "mahalanobis_epsilon": REQUIRED,
        "max_images": REQUIRED}),
})
