"""The dataset registry's declared entries: each loader's own config parameters."""
from regbench.registry import OPTIONAL, Entry, Registry

DATASETS = Registry("dataset", "data", context=("root", "download", "split_seed"), entries={
    "cifar10": Entry("regbench.data.cifar", {"cache": OPTIONAL}),
    "cifar100": Entry("regbench.data.cifar", {"cache": OPTIONAL}),
    "digits": Entry("regbench.data.digits", {"test_fraction": OPTIONAL}),
    "fashion_mnist": Entry("regbench.data.mnist", {"cache": OPTIONAL}),
    "mnist": Entry("regbench.data.mnist", {"cache": OPTIONAL}),
    "svhn": Entry("regbench.data.svhn", {"cache": OPTIONAL}),
    "synthetic": Entry("regbench.data.synthetic", {
        "num_samples": OPTIONAL, "num_classes": OPTIONAL, "image_size": OPTIONAL, "channels": OPTIONAL,
        "noise_std": OPTIONAL, "test_fraction": OPTIONAL}),
})
