"""One training run: its plan (directory, resumption, W&B filing), the Lightning module and trainer, checkpoints,
history, signals, random streams and DDP ranks."""
