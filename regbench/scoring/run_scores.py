"""The Data Diet scores of one completed run: its network rebuilt from config.yaml, its last checkpoint (the end
of its last epoch) loaded, and EL2N and GraNd computed on its training split (unaugmented, with the labels it
trained on); and GraNd at initialization, of the same network freshly initialized from the run's seed (the
paper's independent initializations; not necessarily the weights the run started from). Kept in the run
directory, so a relaunched `regbench score` scores each run once."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from regbench.backbones import build_backbone
from regbench.data.module import build_datamodule
from regbench.data.shape import loaded_run_shape
from regbench.regularizers import build_regularizers
from regbench.run.module import ClassifierModule, upgrade_epoch_sums
from regbench.rundir_format import (CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT, config_hash, read_json,
                                    write_json_atomic)
from regbench.scoring.scores import el2n_in_batches, grand
from regbench.scores_file import SCORES, data_key_hash

SAMPLE_SCORES_FILE = "sample_scores.json"


def run_module(cfg: dict[str, Any], datamodule) -> ClassifierModule:
    """The run's module as built at a run's start, its weights drawn from torch's global generator."""
    shape = loaded_run_shape(datamodule, cfg["trainer"]["max_epochs"], 1)
    regularizers = build_regularizers(cfg["regularizer"], cfg["seed"], backbone=cfg["backbone"],
                                      label_noise=cfg["data"]["noise"], run=cfg)
    model = build_backbone(cfg["backbone"], cfg["norm"], datamodule.image_shape, datamodule.num_classes, shape)
    return ClassifierModule(model, regularizers, datamodule.num_classes, cfg["optim"], cfg["sched"])


def trained_module(cfg: dict[str, Any], run_dir: Path, datamodule) -> ClassifierModule:
    """The run's module as it trained, with the weights of its last checkpoint."""
    module = run_module(cfg, datamodule)
    checkpoint = torch.load(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, map_location="cpu", weights_only=False)
    module.load_state_dict(upgrade_epoch_sums(checkpoint)["state_dict"])
    return module


def score_run(run_dir: Path, device: torch.device) -> dict[str, Any]:
    """The run's per-sample scores ({positions, el2n, grand, config_hash, data_hash}), computed once."""
    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE), resolve=True)
    path = run_dir / SAMPLE_SCORES_FILE
    kept = read_json(path)
    if kept is not None and kept.get("config_hash") == config_hash(cfg) and all(name in kept for name in SCORES):
        return kept
    datamodule = build_datamodule(cfg["data"], cfg["seed"])
    network = trained_module(cfg, run_dir, datamodule).model.to(device).eval()
    torch.manual_seed(cfg["seed"])
    initial = run_module(cfg, datamodule).model.to(device).eval()
    images, labels, positions = datamodule.splits["train"]
    images, labels = datamodule.normalize(images.to(device)), labels.to(device)
    scores = {"positions": positions.tolist(),
              "el2n": el2n_in_batches(network, images, labels, cfg["data"]["batch_size"]).tolist(),
              "grand": grand(network, images, labels).tolist(),
              "grand_init": grand(initial, images, labels).tolist(),
              "config_hash": config_hash(cfg), "data_hash": data_key_hash(cfg["data"])}
    write_json_atomic(path, scores)
    return scores
