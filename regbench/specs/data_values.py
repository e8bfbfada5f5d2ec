"""The data config's values, checked without torch: the config checks refuse them before anything is built (so a
command that only prints the config refuses them too), and a run checks them again when it loads the dataset.
ParamErrors name the keys relative to `data`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from regbench.errors import check, check_fraction, check_positive, check_positive_int, check_probability
from regbench.specs.evaluation import TENSOR_DATASETS
from regbench.scores_file import check_prune_config
from regbench.specs.evaluation import DEVICE_CORRUPTIONS, SHIFT_DATASETS
from regbench.specs.label_shift import (ASYMMETRIC_CONSTRUCTIONS, BALANCE_TYPES, CIFAR_N_KEYS, CONVENTIONS,
                                        ELR_ASYMMETRIC, IMBALANCE_TYPES, NOISE_TYPES, asymmetric_map)

STORAGE_CHOICES = ("auto", "memory", "stream")
SAMPLERS = ("full", "rs2")
# The coloured datasets' tasks: binary (digits 0-4 vs 5-9) or the ten digits.
SPURIOUS_LABELS = ("binary", "digit")


def check_data_values(cfg: Mapping[str, Any]) -> None:
    check_positive_int("batch_size", cfg["batch_size"])
    check_fraction("val_fraction", cfg["val_fraction"])
    check(isinstance(cfg["download"], bool), "download", cfg["download"], "must be true or false")
    check(isinstance(cfg["split_seed"], int), "split_seed", cfg["split_seed"], "must be an integer")
    if "cache" in cfg:  # the file-based datasets' decoded-tensor cache
        check(isinstance(cfg["cache"], bool), "cache", cfg["cache"], "must be true or false")
    augment = cfg["augment"]
    check(isinstance(augment["crop_padding"], int) and augment["crop_padding"] >= 0, "augment.crop_padding",
          augment["crop_padding"], "must be an integer >= 0")
    check(isinstance(augment["hflip"], bool), "augment.hflip", augment["hflip"], "must be true or false")
    # A shifted crop would move modular's one-hot codes to other numbers.
    check(cfg["name"] != "modular" or augment["crop_padding"] == 0, "augment.crop_padding", augment["crop_padding"],
          "must be 0 for data=modular (its inputs are one-hot codes, not images)")
    resized_crop = augment["random_resized_crop"]
    check(isinstance(resized_crop, bool), "augment.random_resized_crop", resized_crop, "must be true or false")
    check(not (resized_crop and augment["crop_padding"]), "augment.crop_padding", augment["crop_padding"],
          "must be 0 with augment.random_resized_crop=true (the resized crop replaces the padded crop)")
    check_storage_config(cfg)
    if "spurious" in cfg:  # the coloured datasets
        check_spurious_config(cfg["spurious"])
    check_noise_config(cfg["noise"], cfg["name"])
    check_imbalance_config(cfg["imbalance"], cfg["balance"])
    if cfg["balance"]["type"] == "smote":
        check_smote_inputs(cfg)
    check_prune_config(cfg)
    check_sampler_config(cfg)
    check_crafted_val_config(cfg["crafted_val"], cfg["name"])
    check_holdout_config(cfg)


def check_crafted_val_config(cfg: Mapping[str, Any], dataset: str) -> None:
    """data.crafted_val: known shift types, each listed once (a type listed twice could craft one fold's validation
    set and augment the training of another, which the k-fold split over types exists to prevent), and a fold of
    the k groups they make."""
    shifts = list(cfg["shifts"]) if isinstance(cfg["shifts"], (list, tuple)) else cfg["shifts"]
    check(isinstance(shifts, list) and all(name in DEVICE_CORRUPTIONS for name in shifts), "crafted_val.shifts",
          shifts,
          f"must be a list of shift types from {', '.join(DEVICE_CORRUPTIONS)} (the corruptions that run on the "
          f"training device)")
    repeated = sorted({name for name in shifts if shifts.count(name) > 1})
    check(not repeated, "crafted_val.shifts", shifts,
          f"lists {', '.join(repeated)} more than once: a type that crafts one fold's validation set must never "
          f"augment training; list each type once")
    check(not shifts or dataset in SHIFT_DATASETS, "crafted_val.shifts", shifts,
          f"shifts images held in memory, but data={dataset} is not one of them; use one of "
          f"{', '.join(SHIFT_DATASETS)}")
    folds, fold = cfg["folds"], cfg["fold"]
    check(_is_int(folds) and folds >= 1 and (not shifts or folds <= len(shifts)), "crafted_val.folds", folds,
          f"must be an integer from 1 to the {len(shifts)} listed shift types (each fold validates on at least one)"
          if shifts else "must be an integer >= 1")
    check(_is_int(fold) and 0 <= fold < folds, "crafted_val.fold", fold,
          f"must be an integer in [0, crafted_val.folds={folds})")
    check(_is_int(cfg["severity"]) and 1 <= cfg["severity"] <= 5, "crafted_val.severity", cfg["severity"],
          "must be an integer from 1 to 5")
    check(_is_int(cfg["seed"]), "crafted_val.seed", cfg["seed"], "must be an integer")


def check_sampler_config(cfg: Mapping[str, Any]) -> None:
    """data.sampler and its rs2 section; RS2 draws each epoch itself, so it cannot share it with class upsampling."""
    sampler, rs2 = cfg["sampler"], cfg["rs2"]
    check(sampler in SAMPLERS, "sampler", sampler, f"allowed: {', '.join(SAMPLERS)}")
    check(_is_number(rs2["fraction"]) and 0 < rs2["fraction"] <= 1, "rs2.fraction", rs2["fraction"],
          "must be a number in (0, 1], the share of the training split each epoch trains on")
    check(isinstance(rs2["replacement"], bool), "rs2.replacement", rs2["replacement"], "must be true or false")
    check(sampler != "rs2" or cfg["balance"]["type"] != "upsample", "sampler", sampler,
          "draws each epoch's images itself, so it cannot run with data.balance.type=upsample (a sampler too); "
          "use balance.type=upweight or none")


def check_holdout_config(cfg: Mapping[str, Any]) -> None:
    """data.holdout_classes: distinct class indices (their range is checked against the dataset's facts). The other
    data options act on the remaining classes, relabelled 0..K-1; asymmetric and file noise name the dataset's
    original classes, and the coloured datasets' colours follow their labels, so neither can follow a relabelling."""
    holdout = cfg["holdout_classes"]
    check(isinstance(holdout, list) and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in holdout)
          and len(set(holdout)) == len(holdout), "holdout_classes", holdout,
          "must be a list of distinct class indices >= 0 ([] holds no class out)")
    if not holdout:
        return
    check(cfg["name"] in TENSOR_DATASETS, "holdout_classes", holdout,
          f"data={cfg['name']} cannot hold classes out; allowed datasets: {', '.join(TENSOR_DATASETS)}")
    check(cfg["noise"]["type"] not in ("asymmetric", "file"), "noise.type", cfg["noise"]["type"],
          "names the dataset's original classes, which data.holdout_classes relabels; with held-out classes use "
          "none, symmetric or pairflip")


def check_smote_inputs(cfg: Mapping[str, Any]) -> None:
    """SMOTE interpolates decoded images under their given labels."""
    check(cfg["noise"]["type"] == "none", "balance.type", "smote",
          f"needs clean training labels (data.noise.type=none, not {cfg['noise']['type']!r}): a synthetic sample "
          f"made from a mislabelled image has no clean label")
    check(cfg.get("storage", "memory") == "memory", "balance.type", "smote",
          f"synthesizes images in memory, so a folder dataset needs data.storage=memory (not {cfg.get('storage')!r})")


def check_spurious_config(cfg: Mapping[str, Any]) -> None:
    """ParamErrors with keys relative to `data`."""
    check(cfg["labels"] in SPURIOUS_LABELS, "spurious.labels", cfg["labels"], f"allowed: {', '.join(SPURIOUS_LABELS)}")
    for key in ("correlation", "test_correlation"):
        check(_is_number(cfg[key]) and 0.0 <= cfg[key] <= 1.0, f"spurious.{key}", cfg[key],
              "must be in [0, 1] (the share of each class in its own colour)")
    check(isinstance(cfg["seed"], int) and not isinstance(cfg["seed"], bool), "spurious.seed", cfg["seed"],
          "must be an integer")


def check_storage_config(cfg: Mapping[str, Any]) -> None:
    """ParamErrors with keys relative to `data`, for the keys a folder dataset's config has."""
    if "storage" in cfg:
        check(cfg["storage"] in STORAGE_CHOICES, "storage", cfg["storage"], f"allowed: {', '.join(STORAGE_CHOICES)}")
    if "max_memory_gb" in cfg:
        check_positive("max_memory_gb", cfg["max_memory_gb"])
    if "num_workers" in cfg:
        workers = cfg["num_workers"]
        check(isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0, "num_workers", workers,
              "must be an integer >= 0 (0 decodes in the training process)")


def check_noise_config(cfg: Mapping[str, Any], dataset: str) -> None:
    """ParamErrors with keys relative to `data`."""
    kind = cfg["type"]
    check(kind in NOISE_TYPES, "noise.type", kind, f"allowed: {', '.join(NOISE_TYPES)}")
    check_probability("noise.rate", cfg["rate"])
    check(cfg["convention"] in CONVENTIONS, "noise.convention", cfg["convention"], f"allowed: {', '.join(CONVENTIONS)}")
    check(isinstance(cfg["apply_to_val"], bool), "noise.apply_to_val", cfg["apply_to_val"], "must be true or false")
    check(isinstance(cfg["seed"], int) and not isinstance(cfg["seed"], bool), "noise.seed", cfg["seed"],
          "must be an integer")
    check(cfg["construction"] in ASYMMETRIC_CONSTRUCTIONS, "noise.construction", cfg["construction"],
          f"allowed: {', '.join(ASYMMETRIC_CONSTRUCTIONS)}")
    if kind == "asymmetric":
        asymmetric_map(dataset)
        check(cfg["construction"] != "elr" or dataset in ELR_ASYMMETRIC, "noise.construction", "elr",
              f"ELR's code builds asymmetric noise for {', '.join(ELR_ASYMMETRIC)} only, not data.name={dataset!r}; "
              f"use construction=exact")
    if kind == "file":
        check(isinstance(cfg["file"], str) and bool(cfg["file"]), "noise.file", cfg["file"],
              "must be the path of a CIFAR-10N/CIFAR-100N .pt file when noise.type=file")
        check(cfg["key"] in CIFAR_N_KEYS, "noise.key", cfg["key"], f"allowed: {', '.join(CIFAR_N_KEYS)}")
        check(Path(cfg["file"]).expanduser().is_file(), "noise.file", cfg["file"], "no such file")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_imbalance_config(imbalance: Mapping[str, Any], balance: Mapping[str, Any]) -> None:
    """ParamErrors with keys relative to `data`."""
    check(imbalance["type"] in IMBALANCE_TYPES, "imbalance.type", imbalance["type"],
          f"allowed: {', '.join(IMBALANCE_TYPES)}")
    check(_is_number(imbalance["factor"]) and imbalance["factor"] >= 1, "imbalance.factor", imbalance["factor"],
          "must be a number >= 1 (rho = n_max / n_min)")
    check_probability("imbalance.minority_fraction", imbalance["minority_fraction"])
    check(isinstance(imbalance["seed"], int) and not isinstance(imbalance["seed"], bool), "imbalance.seed",
          imbalance["seed"], "must be an integer")
    check(balance["type"] in BALANCE_TYPES, "balance.type", balance["type"], f"allowed: {', '.join(BALANCE_TYPES)}")
    check(_is_number(balance["tau"]) and balance["tau"] > 0, "balance.tau", balance["tau"],
          "must be a number > 0 (1 = natural frequencies, inf = uniform classes)")
    check_cooldown_config(balance)
    check(isinstance(balance["smote_k"], int) and not isinstance(balance["smote_k"], bool) and balance["smote_k"] >= 1,
          "balance.smote_k", balance["smote_k"], "must be an integer >= 1 (nearest same-class neighbours; paper: 5)")


def check_cooldown_config(balance: Mapping[str, Any]) -> None:
    tau_end, switch_epoch = balance["tau_end"], balance["switch_epoch"]
    check(tau_end is None or (_is_number(tau_end) and tau_end > 0), "balance.tau_end", tau_end,
          "must be null (no cooldown) or a number > 0, the temperature from balance.switch_epoch on")
    check(switch_epoch is None or (isinstance(switch_epoch, int) and not isinstance(switch_epoch, bool)
                                   and switch_epoch >= 1), "balance.switch_epoch", switch_epoch,
          "must be null (no cooldown) or an integer >= 1, the first epoch (counted from 0) at balance.tau_end")
    check((tau_end is None) == (switch_epoch is None), "balance.switch_epoch", switch_epoch,
          f"cooldown needs both balance.tau_end and balance.switch_epoch (balance.tau_end={tau_end!r})")
    check(tau_end is None or balance["type"] == "upsample", "balance.tau_end", tau_end,
          f"cooldown lowers the sampling temperature, so it needs balance.type=upsample (not {balance['type']!r})")
    check(tau_end is None or not _is_number(balance["tau"]) or tau_end < balance["tau"], "balance.tau_end", tau_end,
          f"must be below balance.tau={balance['tau']!r}: cooldown lowers the sampling temperature")


def check_cooldown_epoch(balance: Mapping[str, Any], max_epochs: int) -> None:
    """A switch at or after the last epoch would never cool down."""
    switch_epoch = balance["switch_epoch"]
    check(switch_epoch is None or switch_epoch < max_epochs, "balance.switch_epoch", switch_epoch,
          f"must be below trainer.max_epochs={max_epochs} (epochs count from 0), or the cooldown never starts")
