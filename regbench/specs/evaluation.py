"""The evaluation registry's declared entries (`eval=[...]`): each is run after training on the final and the
best-validation model and returns metrics for metrics.json. The value rules of their parameters that need neither
the run nor its data are torch-free, so a bad value is one line before the model code loads."""
from typing import Any, Mapping

from regbench.errors import UserError, check, check_non_negative, check_positive, check_positive_int
from regbench.registry import REQUIRED, Entry, Registry
from regbench.specs.values import allowed_names, is_int, is_number

# Datasets held in memory as uint8 tensors, without a spurious attribute (the folder datasets stream from disk;
# modular arithmetic is not images).
TENSOR_DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "svhn", "synthetic")
# The in-distribution's own test images of the classes data.holdout_classes held out of training.
HELD_OUT = "heldout"
# Datasets an OOD evaluation may take as its out-distribution: another dataset's test split, or the held-out classes.
OOD_DATASETS = (*TENSOR_DATASETS, HELD_OUT)
# The Mahalanobis feature ensemble (Lee et al. 2018, sec. 2.2): its score name, the layers it takes and what its
# layer weights are fitted on (see regbench/evaluation/mahalanobis_ensemble.py).
MAHALANOBIS_ENSEMBLE = "mahalanobis_ensemble"
MAHALANOBIS_LAYERS = ("penultimate", "all")
ENSEMBLE_FITS = ("fgsm", "ood_validation")
# In-distribution scores, each higher for images more like the training data. `method` is the score of the trained
# OOD method in the regularizer stack (one of OOD_METHODS).
OOD_SCORES = ("msp", "max_logit", "energy", "mahalanobis", MAHALANOBIS_ENSEMBLE, "method")
# Regularizers that train an OOD detector and define its score (Regularizer.ood_score).
OOD_METHODS: tuple[str, ...] = (
    "abet",
    "class_gmm",
    "palm",
)
# CIFAR-10-C's corruptions regbench builds on the fly (regbench/corruptions/ops.py), each at severities 1..5.
# saturate changes HSV saturation, so it takes colour images only; frost and spatter are refused (UNBUILT_CORRUPTIONS).
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "contrast", "brightness", "saturate",
               "pixelate", "speckle_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "snow", "fog",
               "elastic_transform", "jpeg_compression")
# The corruptions whose draws and filters follow the images' device, which crafted-shift validation may apply to
# training batches on the training device (the others draw on the CPU and run in the evaluations only).
DEVICE_CORRUPTIONS = CORRUPTIONS[:9]
# CIFAR-10-C's corruptions regbench refuses, and why.
UNBUILT_CORRUPTIONS = {
    "frost": "CIFAR-10-C's frost blends in crops of the paper's six frost photographs, which regbench does not ship",
    "spatter": "CIFAR-10-C's spatter draws its drops with OpenCV's Canny edges, distance transform and histogram "
               "equalization, which regbench does not reimplement",
}
# Datasets whose test images are held in memory as uint8 tensors, which the shift evaluations corrupt and reorder.
SHIFT_DATASETS = (*TENSOR_DATASETS, "colored_digits", "colored_mnist")
SEVERITIES = (1, 2, 3, 4, 5)
# FARMS's rule for the lower end of the power-law fit (regbench.evaluation.farms).
XMIN_RULES = ("median", "ks")


def aspect_ratio(key: str, value: Any) -> None:
    check(is_number(value) and value >= 1, key, value, "must be a number >= 1 (rows per column of the submatrices)")


def eigenvalue_count(key: str, value: Any) -> None:
    check_positive_int(key, value)
    check(value >= 2, key, value, "must be an integer >= 2 (one eigenvalue fits no alpha)")


def severity(key: str, value: Any) -> None:
    check(value in SEVERITIES and is_int(value), key, value, "must be a severity from 1, 2, 3, 4, 5")


EVALUATIONS = Registry("evaluation", "eval", context=("data", "seed", "backbone"), entries={
    "corruptions": Entry("regbench.evaluation.corruptions", {"names": REQUIRED, "severities": REQUIRED}),
    "farms": Entry("regbench.evaluation.farms", {
        "aspect_ratio": REQUIRED, "xmin": REQUIRED, "min_eigenvalues": REQUIRED},
        {"aspect_ratio": aspect_ratio, "xmin": allowed_names(XMIN_RULES), "min_eigenvalues": eigenvalue_count}),
    "lame": Entry("regbench.evaluation.lame", {
        "knn": REQUIRED, "max_steps": REQUIRED, "batch_size": REQUIRED, "corruption": REQUIRED, "severity": REQUIRED},
        {"knn": check_positive_int, "max_steps": check_positive_int, "batch_size": check_positive_int,
         "severity": severity}),
    "ood": Entry("regbench.evaluation.ood", {
        "datasets": REQUIRED, "scores": REQUIRED, "energy_temperature": REQUIRED, "mahalanobis_epsilon": REQUIRED,
        "max_images": REQUIRED, "mahalanobis_layers": REQUIRED, "mahalanobis_ensemble_fit": REQUIRED,
        "mahalanobis_ensemble_l2": REQUIRED, "mahalanobis_fgsm_epsilon": REQUIRED},
        {"energy_temperature": check_positive, "mahalanobis_epsilon": check_non_negative,
         "max_images": check_positive_int, "mahalanobis_ensemble_fit": allowed_names(ENSEMBLE_FITS),
         "mahalanobis_ensemble_l2": check_positive, "mahalanobis_fgsm_epsilon": check_positive}),
})


def check_method_score(cfg: Mapping[str, Any]) -> None:
    """eval.ood.scores may hold `method` only when the regularizer stack trains an OOD method."""
    scores = ((cfg["eval"].get("ood") or {}).get("scores")) or ()
    if "method" in scores and not any(name in OOD_METHODS for name in cfg["regularizer"]):
        raise UserError(f"eval.ood.scores holds 'method', but regularizer={list(cfg['regularizer'])} trains no OOD "
                        f"method: add one of {', '.join(OOD_METHODS) or '(none registered)'} to regularizer or drop "
                        f"'method' from eval.ood.scores")
