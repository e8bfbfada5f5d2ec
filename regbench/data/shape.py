"""A run's shape from its data config and the dataset's facts (no data loaded, no torch: the config checks read it
before torch loads), or from a loaded datamodule."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from regbench.data.class_counts import kept_counts, minority_shortfall, profile_counts
from regbench.data.facts import DatasetFacts, dataset_facts, held_in_facts, loader_params
from regbench.errors import ParamError, check
from regbench.runshape import RunShape, rs2_round_images
from regbench.scores_file import check_training_count, kept_count, read_scores

if TYPE_CHECKING:
    from regbench.data.module import ImageDataModule


def run_dataset_facts(cfg: Mapping[str, Any]) -> DatasetFacts:
    """The facts of the dataset the run trains on: without the classes data.holdout_classes holds out."""
    return held_in_facts(dataset_facts(cfg["name"], loader_params(cfg), cfg["root"], cfg["split_seed"]),
                         cfg["holdout_classes"])


def has_validation_split(cfg: Mapping[str, Any]) -> bool:
    """The dataset gives its own validation split, or data.val_fraction draws one from training."""
    return run_dataset_facts(cfg).val_class_counts is not None or cfg["val_fraction"] > 0


def check_colour_corruptions(key: str, value: list[str] | str | None, data: Mapping[str, Any]) -> None:
    """saturate (a list of corruptions holding it, or the name itself) needs RGB images: refuse it for a dataset
    of another channel count."""
    if value != "saturate" and not (isinstance(value, list) and "saturate" in value):
        return
    channels = run_dataset_facts(data).image_shape[0]
    check(channels == 3, key, value, f"saturate needs colour (3-channel) images, but data={data['name']} has "
                                     f"{channels} channel(s); leave it out")


def training_class_counts(cfg: Mapping[str, Any]) -> tuple[tuple[int, int, int], list[int]]:
    """The image shape and the per-class sizes of the training split the run will see: the loader's training
    set without the held-out classes, minus the validation split (none when the dataset gives its own), subsampled
    to the long-tailed profile when `imbalance` asks for it, then every class raised to the largest by SMOTE when
    `balance` asks for it."""
    facts = run_dataset_facts(cfg)
    counts = list(facts.train_class_counts if facts.val_class_counts is not None
                  else kept_counts(facts.train_class_counts, cfg["val_fraction"]))
    if cfg["imbalance"]["type"] != "none":
        counts = profile_counts(cfg["imbalance"], counts)
    if cfg["balance"]["type"] == "smote":
        check_smote_counts(counts, cfg["balance"]["smote_k"])
        counts = [max(counts)] * len(counts)
    return facts.image_shape, counts


def check_smote_counts(counts: list[int], k: int) -> None:
    shortfall = minority_shortfall(counts, k)
    if shortfall is not None:
        c, n = shortfall
        raise ParamError("balance.smote_k", k, f"class {c} has only {n} training images; SMOTE needs more than "
                         f"smote_k images in every class it oversamples (lower it or data.imbalance.factor)")


def check_crop_padding(padding: int, image_shape: tuple[int, int, int]) -> None:
    """Reflect padding mirrors the image inside itself, so torch needs it smaller than each side."""
    height, width = image_shape[1:]
    check(padding < min(height, width), "augment.crop_padding", padding,
          f"reflect padding must be smaller than the {height}x{width} images (at most {min(height, width) - 1})")


def planned_run_shape(cfg: Mapping[str, Any], max_epochs: int, world_size: int) -> RunShape:
    image_shape, counts = training_class_counts(cfg)
    train_images = pruned_count(cfg, sum(counts))
    epoch_images = (rs2_round_images(train_images, cfg["rs2"]["fraction"], cfg["batch_size"], world_size)
                    if cfg["sampler"] == "rs2" else None)
    return RunShape(image_shape, train_images, cfg["batch_size"], world_size, max_epochs, epoch_images)


def pruned_count(cfg: Mapping[str, Any], train_images: int) -> int:
    """The training images left after Data Diet pruning; the scores file must score all `train_images`."""
    path = cfg["prune"]["scores"]
    if path is None:
        return train_images
    check_training_count(read_scores(path), path, train_images)
    return kept_count(train_images, cfg["prune"]["fraction"])


def loaded_run_shape(datamodule: ImageDataModule, max_epochs: int, world_size: int) -> RunShape:
    subsets = datamodule.train_subsets(world_size)
    return RunShape(tuple(datamodule.image_shape), datamodule.split_size("train"), datamodule.batch_size, world_size,
                    max_epochs, None if subsets is None else subsets.round_images)
