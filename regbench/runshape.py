"""The shape of a run, known before any data is loaded: image size, training images, steps.

Components check their settings against it (regbench.specs.run_checks): a setting that would make a technique harmful is
refused in one line, one that merely leaves it inactive is reported and recorded in metrics.json. Settings
that depend on the run's size may be given as a fraction of it (see `count_or_fraction`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regbench.errors import check


@dataclass(frozen=True)
class RunShape:
    image_shape: tuple[int, int, int]  # (C, H, W)
    train_images: int  # after the validation split and any class-imbalance subsampling
    batch_size: int  # per device
    world_size: int  # DDP processes, each taking its own shard of every epoch
    max_epochs: int
    epoch_images: int | None = None  # images each epoch trains on over all ranks (RS2); None: the whole split

    @property
    def image_side(self) -> int:
        """The shorter side of the images, in pixels."""
        return min(self.image_shape[1:])

    @property
    def steps_per_epoch(self) -> int:
        images = self.train_images if self.epoch_images is None else self.epoch_images
        return batches_per_epoch(images, self.batch_size, self.world_size, shuffle=True, drop_last=True)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.max_epochs

    def describe_steps(self) -> str:
        epochs = f"{self.max_epochs} epoch{'s' if self.max_epochs != 1 else ''}"
        return f"{self.total_steps} steps ({epochs} of {self.steps_per_epoch})"


@dataclass(frozen=True)
class Inactive:
    """Why a component would not act on a run: its setting `key=value` (relative to the component's config,
    as ParamError's) and what follows from it, a phrase such as "never mixes a batch"."""

    key: str
    value: Any
    why: str

    def at(self, prefix: str) -> str:
        return f"{prefix}.{self.key}={self.value!r} {self.why}"


def batches_per_epoch(images: int, batch_size: int, world_size: int, *, shuffle: bool, drop_last: bool) -> int:
    """Batches each DDP rank takes per epoch. Shuffled shards are cut to equal sizes (the tail is dropped, a
    different one each epoch); ordered shards keep every image."""
    if shuffle and world_size > 1:
        per_rank = (images - images % world_size) // world_size
    else:
        per_rank = -(-images // world_size)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def rs2_round_images(train_images: int, fraction: float, batch_size: int, world_size: int) -> int:
    """Images an RS2 round (epoch) trains on: `fraction` of the split (rounded), cut down to whole batches on every
    rank, so that the round draws only images it trains on (0 when that is not one batch per rank)."""
    steps = batches_per_epoch(round(fraction * train_images), batch_size, world_size, shuffle=True, drop_last=True)
    return steps * batch_size * world_size


def is_fraction(value) -> bool:
    return isinstance(value, float) and 0.0 < value < 1.0


def count_or_fraction(value: int | float, whole: int) -> int:
    """An integer is a count as it stands; a float in (0, 1) is that fraction of `whole`, rounded (scikit-learn's
    convention for sizes, as train_test_split's test_size), so one setting fits every dataset and run length."""
    return round(value * whole) if is_fraction(value) else value


def check_count_or_fraction(key: str, value, minimum: int, unit: str, whole: str) -> None:
    """`value` is an integer >= `minimum` (in `unit`) or a float in (0, 1) (a fraction of `whole`)."""
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    check(is_count or is_fraction(value), key, value,
          f"must be an integer >= {minimum} ({unit}) or a float in (0, 1) (a fraction of {whole})")


__all__ = ["Inactive", "RunShape", "batches_per_epoch", "check_count_or_fraction", "count_or_fraction", "is_fraction",
           "rs2_round_images"]
