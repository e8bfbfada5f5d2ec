"""The backbone registry: each entry builds a Classifier from the image shape, class count and norm layer."""
from regbench.registry import Registry

BACKBONES = Registry("backbone", "backbone")
