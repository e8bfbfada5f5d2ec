"""The dataset registry: each entry loads one dataset as uint8 tensors (see base.ImageData)."""
from regbench.registry import Registry

DATASETS = Registry("dataset", "data")
