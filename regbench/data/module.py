"""The LightningDataModule: loads a dataset once, splits it, and serves in-memory batches on the device."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import lightning as L
import torch

from regbench.specs.data_values import check_data_values
from regbench.data.base import ImageData
from regbench.data.batches import BatchAugment, TensorBatches
from regbench.data.facts import loader_params
from regbench.data.holdout import hold_out_classes
from regbench.data.imbalance import UpsampleWeights, upweight_class_weights
from regbench.data.labels import build_split_labels
from regbench.data.prune import prune_split
from regbench.data.rs2 import RepeatedRandomSubsets
from regbench.data.smote import smote_oversample
from regbench.data.split import stratified_split
from regbench.errors import ParamError, UserError
from regbench.specs.data import DATASETS

if TYPE_CHECKING:
    from regbench.data.crafted_val import CraftedShifts

class ImageDataModule(L.LightningDataModule):
    """Exposes for the module: `clean_train_labels`, `is_noisy` (per training position; None without noise),
    `class_weights` (upweighting; None otherwise), and the metrics.json sections `noise_report`/`imbalance_report`/
    `smote_report` (SMOTE's synthetic samples, appended to the training split; None without SMOTE),
    `prune_report` (Data Diet pruning; None without a scores file) and `spurious_groups` (coloured datasets: per
    evaluation split, each image's clean label and colour; None otherwise).
    `noise`, `imbalance`, `balance` and `prune` are the data config's sections as composed (their defaults live in
    conf/data/common/label_shift.yaml only); `rs2` is the data config's rs2 section when data.sampler=rs2 (each epoch
    a random subset of the training split, see rs2.py), None when every epoch takes the whole split.
    `crafted_shifts` (crafted-shift validation, see crafted_val.py; None without) shift the training batches, and
    after setup `crafted_val_batches` holds the validation split once shifted by each validated type.
    `held_out_test_images`: the uint8 test images of the classes data.holdout_classes dropped (None without)."""

    def __init__(self, data: ImageData, *, batch_size: int, val_fraction: float, split_seed: int, seed: int,
                 crop_padding: int, hflip: bool, dataset: str, noise: Mapping[str, Any],
                 imbalance: Mapping[str, Any], balance: Mapping[str, Any], prune: Mapping[str, Any],
                 resized_crop: bool = False, rs2: Mapping[str, Any] | None = None,
                 crafted_shifts: CraftedShifts | None = None):
        super().__init__()
        self.rs2 = rs2
        self.crafted_shifts = crafted_shifts
        self.crafted_val_batches: dict[str, TensorBatches] = {}
        self.classes = data.classes
        self.held_out_test_images = data.held_out_test_x
        self.image_shape = data.image_shape
        self.batch_size, self.seed = batch_size, seed
        self.mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std).view(1, -1, 1, 1)
        train_idx, val_idx = (stratified_split(data.train_y, val_fraction, split_seed) if data.val_idx is None
                              else given_validation(len(data.train_y), data.val_idx))
        labels, self.prune_report = prune_split(build_split_labels(data, train_idx, val_idx, dataset, noise, imbalance),
                                                prune)
        self.clean_train_labels = labels.clean_train
        self.is_noisy = labels.given_train != labels.clean_train if labels.noise is not None else None
        self.noise_report, self.imbalance_report = labels.noise, labels.imbalance
        self.sample_weights = (UpsampleWeights.for_labels(labels.given_train, self.num_classes, balance)
                               if balance["type"] == "upsample" else None)
        self.class_weights = (upweight_class_weights(labels.given_train, self.num_classes, balance["tau"])
                              if balance["type"] == "upweight" else None)
        train = (data.train_x[labels.train_idx], labels.given_train, labels.train_idx)
        self.smote_report = None
        if balance["type"] == "smote":
            train = self._with_smote(*train, balance)
        self.splits = {
            "train": train,
            "val": (data.train_x[val_idx], labels.given_val, val_idx),
            "test": (data.test_x, data.test_y, torch.arange(len(data.test_y))),
        }
        self.spurious_groups = None if data.train_colors is None else {
            "val": (data.train_y[val_idx], data.train_colors[val_idx]), "test": (data.test_y, data.test_colors)}
        # A flip that changes the label (digits, SVHN) is never applied, whatever the config says.
        training_shift = crafted_shifts.training_shift(self.mean, self.std) if crafted_shifts is not None else None
        self.augment = BatchAugment(crop_padding, hflip and data.hflip_ok, resized_crop, training_shift)
        self._batches: dict[str, TensorBatches] = {}

    def _with_smote(self, images: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor,
                    balance: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training split with SMOTE's samples appended (no source image: position -1); the labels are clean."""
        gen = torch.Generator().manual_seed(balance["seed"])
        images, labels, added = smote_oversample(images, labels, self.num_classes, balance["smote_k"], gen)
        self.clean_train_labels = labels
        self.smote_report = {"k": balance["smote_k"], "added_per_class": added,
                             "train_counts": torch.bincount(labels, minlength=self.num_classes).tolist()}
        synthetic = torch.full((len(labels) - len(positions),), -1, dtype=positions.dtype)
        return images, labels, torch.cat([positions, synthetic])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def train_class_counts(self) -> torch.Tensor:
        """Training images of each class, by their given (possibly noisy) labels."""
        return torch.bincount(self.splits["train"][1], minlength=self.num_classes)

    def split_size(self, split: str) -> int:
        return len(self.splits[split][1])

    def train_subsets(self, world_size: int) -> RepeatedRandomSubsets | None:
        """RS2's per-epoch subsets of the training split (None without data.sampler=rs2)."""
        if self.rs2 is None:
            return None
        return RepeatedRandomSubsets.for_config(self.rs2, self.split_size("train"), self.batch_size, world_size,
                                                self.seed)

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean.to(images.device)) / self.std.to(images.device)

    def setup(self, stage: str | None = None) -> None:
        if self._batches:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        for split, (images, labels, _) in self.splits.items():
            images = self.normalize(images.to(device))
            labels = labels.to(device)
            if split == "train":
                if self.batch_size > len(labels):
                    raise UserError(f"data.batch_size={self.batch_size} is larger than the {len(labels)} "
                                    f"training images; use a smaller batch size")
                weights = self.sample_weights.to(device) if self.sample_weights is not None else None
                self._batches[split] = TensorBatches(
                    self.augment.prepare(images), labels, self.batch_size, shuffle=True, seed=self.seed,
                    augment=self.augment, image_size=self.image_shape[1:], drop_last=True, sample_weights=weights,
                    subsets=self.train_subsets(self._world_size()))
            else:
                self._batches[split] = TensorBatches(images, labels, self.batch_size, shuffle=False)
        if self.crafted_shifts is not None:
            images, labels, _ = self.splits["val"]
            self.crafted_val_batches = {
                name: TensorBatches(((pixels.to(device) - self.mean.to(device)) / self.std.to(device)),
                                    labels.to(device), self.batch_size, shuffle=False, shard=False)
                for name, pixels in self.crafted_shifts.validation_pixels(images).items()}

    def train_dataloader(self) -> TensorBatches:
        return self._batches["train"]

    def val_dataloader(self) -> TensorBatches:
        return self._batches["val"]

    def test_dataloader(self) -> TensorBatches:
        return self._batches["test"]

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # setup() put the batches on the training device: skip Lightning's walk over every batch.
        if all(tensor.device == device for tensor in batch):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def unaugmented_train_batches(self) -> TensorBatches:
        """The whole training split in order, normalized but neither padded nor augmented, with the labels trained
        on: a second copy of the training images, made only for the reports that evaluate on them."""
        images, labels, _ = self.splits["train"]
        device = self._batches["train"].labels.device
        return TensorBatches(self.normalize(images.to(device)), labels.to(device), self.batch_size, shuffle=False,
                             shard=False)

    def unsharded_batches(self, split: str) -> TensorBatches:
        """The whole val or test split on every DDP rank, for evaluations made outside the Trainer."""
        batches = self._batches[split]
        return TensorBatches(batches.images, batches.labels, batches.batch_size, shuffle=False, shard=False)


def given_validation(n: int, val_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) positions when the dataset gives its validation split."""
    training = torch.ones(n, dtype=torch.bool)
    training[val_idx] = False
    return torch.nonzero(training).squeeze(1), val_idx


def load_images(cfg: Mapping[str, Any]) -> ImageData:
    """Load the dataset named by `cfg.name` with its own parameters, without its held-out classes; a missing file
    is a one-line UserError."""
    try:
        check_data_values(cfg)
    except ParamError as err:
        raise err.at("data") from None
    data = DATASETS.create(cfg["name"], loader_params(cfg), root=cfg["root"], download=cfg["download"],
                           split_seed=cfg["split_seed"])
    try:
        return hold_out_classes(data, cfg["holdout_classes"])
    except ParamError as err:
        raise err.at("data") from None


def build_datamodule(cfg: Mapping[str, Any], seed: int) -> ImageDataModule:
    """Load the dataset named by `cfg.name` with its own parameters and wrap it for Lightning."""
    data = load_images(cfg)
    settings = dict(batch_size=cfg["batch_size"], val_fraction=cfg["val_fraction"], split_seed=cfg["split_seed"],
                    seed=seed, crop_padding=cfg["augment"]["crop_padding"], hflip=cfg["augment"]["hflip"],
                    resized_crop=cfg["augment"]["random_resized_crop"], dataset=cfg["name"],
                    noise=cfg["noise"], imbalance=cfg["imbalance"], balance=cfg["balance"], prune=cfg["prune"],
                    rs2=cfg["rs2"] if cfg["sampler"] == "rs2" else None)
    # Imported here: the shift ops' package (regbench.evaluation) imports this module.
    from regbench.data.crafted_val import CraftedShifts
    settings["crafted_shifts"] = CraftedShifts.for_config(cfg["crafted_val"])
    if not isinstance(data, ImageData):  # a folder dataset: decoded into memory when it fits, else streamed
        from regbench.data.stream import folder_datamodule
        return folder_datamodule(data, cfg, settings)
    return ImageDataModule(data, **settings)
