"""The checks of a run config that need the run's planned shape, this machine's devices or its files but no model
code, made torch-free for a run that will train: the dataset's raw files, the batch size and augmentation against
the dataset's facts, the validation split that calibration and crafted-shift validation need, the regularizers that
cannot be stacked, the norm against the backbone and the batch size, every component against the run's shape
(regbench.config.inactivity), and the accelerator. The checks that build the model follow
(regbench.config.buildable)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regbench.config.inactivity import inactive_components
from regbench.data.files import check_data_files
from regbench.data.shape import (check_colour_corruptions, check_crop_padding, has_validation_split,
                                 planned_run_shape)
from regbench.devices import local_world_size, training_accelerator
from regbench.errors import ParamError, UserError, check
from regbench.rundir_format import config_hash
from regbench.runshape import RunShape
from regbench.specs.compat import check_backbone_norm, check_norm_batch, check_norm_widths
from regbench.specs.data_values import check_cooldown_epoch
from regbench.specs.placement import split_norm_config
from regbench.specs.regularizers import check_stackable


@dataclass(frozen=True)
class PlannedRun:
    shape: RunShape
    inactive: tuple[dict[str, str], ...]  # metrics.json's `inactive`: components the run's shape leaves inactive


# The runs this process planned, by (config hash, on_this_machine): as with the model checks
# (regbench.config.buildable), the preflight's check serves the job the same process then runs. A refused config is
# never kept.
_PLANNED: dict[tuple[str, bool], PlannedRun] = {}


def check_planned_run(cfg: dict[str, Any], on_this_machine: bool = True) -> PlannedRun:
    """`on_this_machine`: the job trains here, so the accelerator and the data files must be this machine's (false
    for SLURM jobs, which check again on their node). Returns the run's shape and its inactive components. Made once
    per config and process."""
    key = (config_hash(cfg), on_this_machine)
    if key not in _PLANNED:
        _PLANNED[key] = planned_checks(cfg, on_this_machine)
    return _PLANNED[key]


def planned_checks(cfg: dict[str, Any], on_this_machine: bool) -> PlannedRun:
    if on_this_machine:
        check_data_files(cfg["data"])
    shape = checked_run_shape(cfg)
    check_validation_users(cfg)
    check_stackable(cfg["regularizer"])
    norm, _, placement = split_norm_config(cfg["norm"])
    check_backbone_norm(cfg["backbone"]["name"], norm, placement)
    check_norm_batch(norm, shape.batch_size)
    check_norm_widths(cfg["backbone"], cfg["norm"])
    inactive = inactive_components(cfg, shape)
    if on_this_machine:
        # Last: where a GPU driver is installed, counting the devices imports torch and Lightning (seconds), which
        # a run then needs anyway, but a mistake found above does not (trainer.devices=auto counts them earlier).
        training_accelerator(cfg["trainer"])
    return PlannedRun(shape, tuple(inactive))


def check_validation_users(cfg: dict[str, Any]) -> None:
    """Calibrators fit on the validation split and crafted-shift validation shifts it, so there must be one; its
    saturate shift needs colour images."""
    data, has_validation = cfg["data"], has_validation_split(cfg["data"])
    if cfg["calibrate"] and not has_validation:
        raise UserError(f"calibrate=[{','.join(cfg['calibrate'])}] fits on the validation split, but "
                        f"data.val_fraction={data['val_fraction']!r} leaves none; set data.val_fraction in (0, 1) or "
                        f"drop calibrate")
    shifts = list(data["crafted_val"]["shifts"])
    if shifts and not has_validation:
        raise UserError(f"data.crafted_val.shifts={shifts!r} shifts the validation split, but "
                        f"data.val_fraction={data['val_fraction']!r} leaves none; set data.val_fraction in (0, 1) or "
                        f"set data.crafted_val.shifts=[]")
    try:
        check_colour_corruptions("crafted_val.shifts", shifts, data)
    except ParamError as err:
        raise UserError(str(err.at("data"))) from None


def checked_run_shape(cfg: dict[str, Any]) -> RunShape:
    """The run's shape from the data config and the dataset's facts; a batch larger than the training split
    (per device), an RS2 fraction too small for one batch per epoch and crop padding that reflect padding cannot give
    the images are refused."""
    world = local_world_size(cfg["trainer"])
    try:
        shape = planned_run_shape(cfg["data"], cfg["trainer"]["max_epochs"], world)
        per_device = shape.train_images // world
        check(per_device >= shape.batch_size, "batch_size", shape.batch_size,
              f"must be at most the {per_device} training images (after the validation split"
              f"{', per device' if world > 1 else ''}) so that an epoch has a full batch")
        check(shape.epoch_images != 0, "rs2.fraction", cfg["data"]["rs2"]["fraction"],
              f"leaves fewer than one batch of {shape.batch_size}{' per device' if world > 1 else ''} of the "
              f"{shape.train_images} training images per epoch; raise it or lower data.batch_size")
        check_crop_padding(cfg["data"]["augment"]["crop_padding"], shape.image_shape)
        check_cooldown_epoch(cfg["data"]["balance"], cfg["trainer"]["max_epochs"])
    except ParamError as err:
        raise UserError(str(err.at("data"))) from None
    return shape
