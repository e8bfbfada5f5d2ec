"""Datasets as in-memory tensors, or streamed from image folders. Importing this package registers every
loader."""
from regbench.data import cifar, colored, digits, folder_datasets, mnist, modular, svhn, synthetic  # noqa: F401  (registers them)
from regbench.data.module import ImageDataModule, build_datamodule
from regbench.data.registry import DATASETS

__all__ = ["DATASETS", "ImageDataModule", "build_datamodule"]
