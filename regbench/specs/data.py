"""The dataset registry's declared entries: each loader's own config parameters."""
from regbench.registry import OPTIONAL, REQUIRED, Entry, Registry

# The folder datasets' loader parameters (image size and channels, the evaluation crop, normalization, cache).
_FOLDER = {"image_size": OPTIONAL, "channels": OPTIONAL, "crop_fraction": OPTIONAL, "mean": OPTIONAL,
           "std": OPTIONAL}

DATASETS = Registry("dataset", "data", context=("root", "download", "split_seed"), entries={
    "cifar10": Entry("regbench.data.cifar", {"cache": OPTIONAL}),
    "cifar100": Entry("regbench.data.cifar", {"cache": OPTIONAL}),
    "colored_digits": Entry("regbench.data.colored", {"spurious": REQUIRED, "test_fraction": OPTIONAL}),
    "colored_mnist": Entry("regbench.data.colored", {"spurious": REQUIRED, "cache": OPTIONAL}),
    "digits": Entry("regbench.data.digits", {"test_fraction": OPTIONAL}),
    "fashion_mnist": Entry("regbench.data.mnist", {"cache": OPTIONAL}),
    "image_folder": Entry("regbench.data.folder_datasets", {**_FOLDER, "test_fraction": OPTIONAL, "cache": OPTIONAL}),
    "imagenet": Entry("regbench.data.folder_datasets", {**_FOLDER, "cache": OPTIONAL}),
    "mnist": Entry("regbench.data.mnist", {"cache": OPTIONAL}),
    "modular": Entry("regbench.data.modular", {"modulus": OPTIONAL, "operation": OPTIONAL, "train_fraction": OPTIONAL}),
    "svhn": Entry("regbench.data.svhn", {"cache": OPTIONAL}),
    "synthetic": Entry("regbench.data.synthetic", {
        "num_samples": OPTIONAL, "num_classes": OPTIONAL, "image_size": OPTIONAL, "channels": OPTIONAL,
        "noise_std": OPTIONAL, "test_fraction": OPTIONAL}),
    "tiny_imagenet": Entry("regbench.data.folder_datasets", {**_FOLDER, "cache": OPTIONAL}),
})
