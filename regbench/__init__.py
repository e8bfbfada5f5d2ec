"""regbench: side-by-side ablation of regularization and normalization techniques."""

__version__ = "0.1.0"
