"""What a noisy, long-tailed or subset-sampled (RS2) run adds to metrics.json and to the experiment logger."""
from __future__ import annotations

from typing import Any

from regbench.data.module import ImageDataModule
from regbench.rundir_format import MetricsKey


def label_sections(datamodule: ImageDataModule, test_per_class_acc: list[float] | None) -> dict[str, Any]:
    """metrics.json's `noise` section (noisy runs), `smote` (SMOTE runs: k and the synthetic samples added per class),
    `prune` (Data Diet runs: the scores file, score, fraction, keep and the images kept) and `imbalance`,
    `per_class_acc`, `balanced_acc` (long-tailed runs; test set, final model)."""
    sections: dict[str, Any] = {}
    if datamodule.noise_report is not None:
        sections["noise"] = datamodule.noise_report
    if datamodule.smote_report is not None:
        sections["smote"] = datamodule.smote_report
    if datamodule.prune_report is not None:
        sections["prune"] = datamodule.prune_report
    if datamodule.imbalance_report is not None and test_per_class_acc is not None:
        sections["imbalance"] = datamodule.imbalance_report
        sections["per_class_acc"] = test_per_class_acc
        sections[MetricsKey.BALANCED_ACC] = sum(test_per_class_acc) / len(test_per_class_acc)
    return sections


def sampler_sections(datamodule: ImageDataModule, epochs: int) -> dict[str, Any]:
    """metrics.json's `rs2` section (data.sampler=rs2 runs): fraction, variant, images per epoch, samples seen in the
    `epochs` trained and how many distinct training images they covered."""
    subsets = datamodule.train_dataloader().subsets
    return {} if subsets is None else {"rs2": subsets.report(epochs)}


def log_label_report(logger, datamodule: ImageDataModule) -> None:
    """The realised noise (rate and transition matrix), per-class training counts and SMOTE's additions, before
    training starts."""
    if logger is None:
        return
    report = {key: value for key, value in (("noise", datamodule.noise_report),
                                            ("imbalance", datamodule.imbalance_report),
                                            ("smote", datamodule.smote_report),
                                            ("prune", datamodule.prune_report)) if value is not None}
    if report:
        logger.log_hyperparams(report)
    if datamodule.noise_report is not None:
        logger.log_metrics({"noise/realised_rate": datamodule.noise_report["realised_rate"]}, step=0)
