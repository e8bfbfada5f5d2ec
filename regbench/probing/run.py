"""The probe itself: target images fitted to the runs' input shape, each run's features, one probe per k."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from regbench.probing.features import (check_target_shape, common_input_shape, fitted_images, run_features,
                                       target_datamodule)
from regbench.probing.linear import concatenated, fit_probe
from regbench.probing.plan import FEATURES_DIR, ProbeRun
from regbench.probing.report import probe_payload, table, write_probe


def run_probe(runs: list[ProbeRun], target: Mapping[str, Any], out: Path, settings: Mapping[str, Any]) -> None:
    source = common_input_shape(runs)
    check_target_shape(target, source)
    datamodule = target_datamodule(target)
    images = {split: fitted_images(datamodule, split, source) for split in ("train", "test")}
    labels = {split: datamodule.splits[split][1] for split in ("train", "test")}
    features = [run_features(run, images, target, out / FEATURES_DIR) for run in runs]
    results = []
    for k in range(1, len(runs) + 1):
        train, test = (concatenated([f[split] for f in features], k) for split in ("train", "test"))
        probe = fit_probe(train, labels["train"], datamodule.num_classes, settings["l2"], settings["max_iter"])
        results.append({"k": k, "num_features": train.shape[1], "train_acc": probe.accuracy(train, labels["train"]),
                        "test_acc": probe.accuracy(test, labels["test"])})
        print(f"k={k}: {train.shape[1]} features, test_acc {results[-1]['test_acc']:.4f}", flush=True)
    path = write_probe(out, probe_payload(runs, target, settings, results, 1 / datamodule.num_classes))
    print(table(results))
    print(f"wrote {path}")
