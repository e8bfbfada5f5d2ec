"""The checks of a run config that need the model code (torch), made only for a run that will train, after the
torch-free ones (regbench.config.planned): every component against the run's shape, the regularizer stack, the
calibrators and evaluations built, the model built on the meta device, the init source's keys and shapes against it,
and the device memory."""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from regbench.backbones import dry_build_backbone
from regbench.calibration import build_calibrators
from regbench.evaluation import build_evaluations
from regbench.data.shape import run_dataset_facts
from regbench.devices import training_memory
from regbench.init.weights import check_init_fits
from regbench.optim import build_optimizer, build_schedule, projects_weights
from regbench.regularizers import MemoryBudget, build_regularizers, check_regularizers_memory
from regbench.rundir_format import config_hash
from regbench.runshape import RunShape
from regbench.optim.projection import check_projection_acts

# The configs this process found buildable, by (config hash, on_this_machine), with their inactive components:
# the preflight checks every job of a command, and a job run by the same process then finds its config checked
# (a SLURM job runs in its own process on its node and checks again). A refused config is never kept.
_BUILDABLE: set[tuple[str, bool]] = set()


def check_buildable(cfg: dict[str, Any], shape: RunShape, on_this_machine: bool = True) -> None:
    """`shape`: the run's, as check_planned_run returned it. `on_this_machine`: the job trains here, so the device
    memory must be this machine's (false for SLURM jobs, which check again on their node). Made once per config and
    process."""
    key = (config_hash(cfg), on_this_machine)
    if key not in _BUILDABLE:
        build_checks(cfg, shape, on_this_machine)
        _BUILDABLE.add(key)


def build_checks(cfg: dict[str, Any], shape: RunShape, on_this_machine: bool) -> None:
    regularizers = build_regularizers(cfg["regularizer"], cfg["seed"], backbone=cfg["backbone"],
                                      label_noise=cfg["data"]["noise"], run=cfg)
    num_classes = run_dataset_facts(cfg["data"]).num_classes
    build_calibrators(cfg["calibrate"], cfg["seed"])
    build_evaluations(cfg["eval"], cfg["data"], cfg["seed"], cfg["backbone"]["name"])
    model = dry_build_backbone(cfg["backbone"], cfg["norm"], shape.image_shape, num_classes, shape)
    check_init_fits(cfg["init"], model)
    optimizer = build_optimizer(cfg["optim"], nn.Linear(1, 1))
    if projects_weights(cfg["optim"]):
        check_projection_acts(model, shape.image_shape, cfg["backbone"]["name"], cfg["norm"]["name"])
    build_schedule(cfg["sched"], optimizer, steps_per_epoch=shape.steps_per_epoch, total_steps=shape.total_steps)
    memory = (lambda: training_memory(cfg["trainer"])) if on_this_machine else None  # asked only where needed
    check_regularizers_memory(regularizers, MemoryBudget(shape.batch_size, model.num_features, num_classes, memory))
