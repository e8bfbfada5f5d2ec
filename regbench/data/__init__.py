"""Datasets as in-memory tensors, or streamed from image folders. Importing this package imports nothing, so that
its torch-free modules (facts, shape, folder, class_counts) load without torch; each loader's module is imported
when regbench.specs.data.DATASETS first builds its dataset."""
