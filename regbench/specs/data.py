"""The dataset registry's declared entries: each loader's own config parameters."""
from regbench.registry import REQUIRED, Entry, Registry

# The folder datasets' loader parameters (image size and channels, the evaluation crop, normalization, cache).
_FOLDER = {"image_size": REQUIRED, "channels": REQUIRED, "crop_fraction": REQUIRED, "mean": REQUIRED,
           "std": REQUIRED}

DATASETS = Registry("dataset", "data", context=("root", "download", "split_seed"), entries={
    "cifar10": Entry("regbench.data.cifar", {"cache": REQUIRED}),
    "cifar100": Entry("regbench.data.cifar", {"cache": REQUIRED}),
    "colored_digits": Entry("regbench.data.colored", {"spurious": REQUIRED, "test_fraction": REQUIRED}),
    "colored_mnist": Entry("regbench.data.colored", {"spurious": REQUIRED, "cache": REQUIRED}),
    "digits": Entry("regbench.data.digits", {"test_fraction": REQUIRED}),
    "fashion_mnist": Entry("regbench.data.mnist", {"cache": REQUIRED}),
    "image_folder": Entry("regbench.data.folder_datasets", {**_FOLDER, "test_fraction": REQUIRED, "cache": REQUIRED}),
    "imagenet": Entry("regbench.data.folder_datasets", {**_FOLDER, "cache": REQUIRED}),
    "mnist": Entry("regbench.data.mnist", {"cache": REQUIRED}),
    "modular": Entry("regbench.data.modular", {"modulus": REQUIRED, "operation": REQUIRED, "train_fraction": REQUIRED}),
    "svhn": Entry("regbench.data.svhn", {"cache": REQUIRED}),
    "synthetic": Entry("regbench.data.synthetic", {
        "num_samples": REQUIRED, "num_classes": REQUIRED, "image_size": REQUIRED, "channels": REQUIRED,
        "noise_std": REQUIRED, "test_fraction": REQUIRED}),
    "tiny_imagenet": Entry("regbench.data.folder_datasets", {**_FOLDER, "cache": REQUIRED}),
})
