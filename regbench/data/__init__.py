"""Datasets as in-memory tensors, or streamed from image folders. Importing this package registers every
loader."""
# Every dataset module, so that importing this package registers every loader.
from regbench.data import (cifar, colored, digits, folder_datasets, mnist, modular, svhn,  # noqa: F401
                           synthetic)
from regbench.data.module import ImageDataModule, build_datamodule
from regbench.data.registry import DATASETS

__all__ = ["DATASETS", "ImageDataModule", "build_datamodule"]
