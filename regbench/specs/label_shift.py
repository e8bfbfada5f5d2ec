"""The label-noise and imbalance settings' allowed values and the asymmetric class maps, importable without torch
(the config checks read them; regbench.data.noise and regbench.data.imbalance apply them)."""
from regbench.errors import check

NOISE_TYPES = ("none", "symmetric", "asymmetric", "pairflip", "file")
CONVENTIONS = ("uniform_all", "uniform_other", "transition")
ASYMMETRIC_CONSTRUCTIONS = ("exact", "elr")
# CIFAR-10N (aggre/random/worse) and CIFAR-100N (noisy_label) label sets (Wei et al., 2022).
CIFAR_N_KEYS = ("aggre_label", "random_label1", "random_label2", "random_label3", "worse_label", "noisy_label")

# Class-dependent flips between visually similar classes.
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    # truck->automobile, bird->airplane, deer->horse, cat<->dog (Patrini et al., 2017; ELR).
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # Circular shift within blocks of 5 consecutive class indices (ELR).
    "cifar100": {c: c // 5 * 5 + (c % 5 + 1) % 5 for c in range(100)},
    # 2->7, 3->8, 5<->6, 7->1 (Han et al., 2018; Patrini et al., 2017).
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
}
# ELR's code builds asymmetric noise for CIFAR-10 (relabelling in place) and CIFAR-100 (per-sample draws) only.
ELR_IN_PLACE, ELR_PER_SAMPLE = "in_place", "per_sample"
ELR_ASYMMETRIC = {"cifar10": ELR_IN_PLACE, "cifar100": ELR_PER_SAMPLE}
# Datasets whose classes are the digits 0-9 reuse the MNIST confusions.
ASYMMETRIC_MAP_OF = {"cifar10": "cifar10", "cifar100": "cifar100", "mnist": "mnist", "digits": "mnist",
                     "svhn": "mnist"}

IMBALANCE_TYPES = ("none", "exponential", "step")
BALANCE_TYPES = ("none", "upsample", "upweight", "smote")


def asymmetric_map(dataset: str) -> dict[int, int]:
    check(dataset in ASYMMETRIC_MAP_OF, "noise.type", "asymmetric",
          f"has no class map for data.name={dataset!r}; defined for: {', '.join(sorted(ASYMMETRIC_MAP_OF))}")
    return ASYMMETRIC_MAPS[ASYMMETRIC_MAP_OF[dataset]]
