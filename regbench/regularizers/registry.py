"""The regularizer registry: each entry is a Regularizer subclass built from its config parameters + seed."""
from regbench.registry import Registry

REGULARIZERS = Registry("regularizer", "regularizer", context=("seed", "label_noise", "dataset", "backbone"))
