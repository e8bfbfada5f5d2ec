"""Penultimate features of a source run on the target images: the run's backbone rebuilt from its config, its
checkpoint's feature tensors loaded (the classifier head is not needed), `forward_features` in evaluation mode.
The target images are normalized with the target dataset's statistics, then fitted to the runs' input shape."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from regbench.backbones import build_backbone
from regbench.data.module import ImageDataModule, build_datamodule
from regbench.data.shape import planned_run_shape, training_class_counts
from regbench.errors import UserError
from regbench.init.weights import fit_source
from regbench.probing.plan import ProbeRun
from regbench.rundir_format import config_hash

# Images per forward pass: the feature extraction's memory, not its result.
EXTRACTION_BATCH = 512


def common_input_shape(runs: list[ProbeRun]) -> tuple[int, int, int]:
    """The (C, H, W) every run was trained on; runs of different input shapes cannot share a target."""
    shapes = [tuple(training_class_counts(run.config["data"])[0]) for run in runs]
    for run, shape in zip(runs, shapes):
        if shape != shapes[0]:
            raise UserError(f"runs {runs[0].run_dir} and {run.run_dir} take different input shapes ({shapes[0]} and "
                            f"{shape}); probe runs of one input shape together")
    return shapes[0]


def check_target_shape(target: Mapping[str, Any], source: tuple[int, int, int]) -> tuple[int, int, int]:
    """The target's image shape, if its images can be fitted to the runs' `source` shape: the same channel count
    or one channel (repeated); any height and width (resized)."""
    shape, _ = training_class_counts(target)
    if shape[0] not in (source[0], 1):
        allowed = "1-channel images" if source[0] == 1 else f"{source[0]}-channel or 1-channel images (repeated)"
        raise UserError(f"--data data={target['name']} has {shape[0]}-channel images and the runs take {source[0]}-"
                        f"channel images; allowed: a target of {allowed}")
    return tuple(shape)


def target_datamodule(target: Mapping[str, Any]) -> ImageDataModule:
    datamodule = build_datamodule(target, seed=0)  # the seed shuffles training batches, which a probe never draws
    if not isinstance(datamodule, ImageDataModule):
        raise UserError(f"--data data={target['name']} would be streamed from disk; a probe needs its images in "
                        f"memory: set data.storage=memory")
    return datamodule


def fitted_images(datamodule: ImageDataModule, split: str, source: tuple[int, int, int]) -> torch.Tensor:
    """The split's images normalized by the target's statistics, channels repeated and resized to the runs' (C, H, W):
    averaged over the source pixels each output pixel covers when shrinking, bilinear otherwise."""
    images = datamodule.normalize(datamodule.splits[split][0])
    if images.shape[1] != source[0]:
        images = images.expand(-1, source[0], -1, -1)
    size = tuple(images.shape[2:])
    if size != tuple(source[1:]):
        shrinks = all(have >= want for have, want in zip(size, source[1:]))
        images = (F.interpolate(images, size=source[1:], mode="area") if shrinks
                  else F.interpolate(images, size=source[1:], mode="bilinear", align_corners=False))
    return images.contiguous()


def load_network(run: ProbeRun, image_shape: tuple[int, int, int]) -> torch.nn.Module:
    """The run's backbone with its checkpoint's weights; every feature tensor must be in the checkpoint."""
    cfg = run.config
    run_shape = planned_run_shape(cfg["data"], cfg["trainer"]["max_epochs"], 1)
    num_classes = len(training_class_counts(cfg["data"])[1])
    model = build_backbone(cfg["backbone"], cfg["norm"], image_shape, num_classes, run_shape)
    fit = fit_source(run.checkpoint, model, strict=False, reset_head=True)
    if fit.missing:
        raise UserError(f"run {run.run_dir}: its checkpoint {run.checkpoint.path.name} lacks the feature tensor "
                        f"{fit.missing[0]}; it cannot be probed")
    model.load_state_dict(fit.state, strict=False)
    return model.eval()


@torch.no_grad()
def extract(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.forward_features(chunk).flatten(1).float()
                      for chunk in images.split(EXTRACTION_BATCH)])


def cache_key(run: ProbeRun, target: Mapping[str, Any]) -> dict[str, Any]:
    """What a cached feature file was computed from: the run, its checkpoint (and its bytes' size and time) and
    the target."""
    stat = run.checkpoint.path.stat()
    return {"run_config_hash": run.config_hash, "checkpoint": run.checkpoint.checkpoint,
            "checkpoint_size": stat.st_size, "checkpoint_mtime_ns": stat.st_mtime_ns,
            "target_config_hash": config_hash(dict(target))}


def run_features(run: ProbeRun, images: dict[str, torch.Tensor], target: Mapping[str, Any],
                 cache_dir: Path) -> dict[str, torch.Tensor]:
    """The run's features of each split's images, read from `cache_dir` when an earlier (interrupted) probe of the
    same run, checkpoint and target left them there."""
    key = cache_key(run, target)
    path = cache_dir / f"{run.config_hash[:16]}-{run.checkpoint.checkpoint}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("key") == key:
            return cached["features"]
    source = tuple(next(iter(images.values())).shape[1:])
    model = load_network(run, source)
    features = {split: extract(model, split_images) for split, split_images in images.items()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"key": key, "features": features}, tmp)
    tmp.replace(path)
    return features
