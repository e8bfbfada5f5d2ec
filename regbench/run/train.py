"""One training run: a planned run directory -> data, model, regularizers -> Lightning fit/test -> results."""
from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch.nn as nn
from torch.multiprocessing.spawn import ProcessException
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from regbench.backbones import build_backbone
from regbench.calibration import build_calibrators
from regbench.calibration.report import CALIBRATED_KEY, calibrated_report
from regbench.config.inactivity import inactive_components, warn_inactive
from regbench.data.module import build_datamodule
from regbench.data.report import label_sections, log_label_report, sampler_sections
from regbench.data.shape import loaded_run_shape
from regbench.devices import local_world_size, skip_failing_nvml_check
from regbench.errors import ReportedError, UserError
from regbench.evaluation import build_evaluations, run_evaluations
from regbench.init.frozen_norms import FrozenNormStatistics
from regbench.init.weights import init_report, initialize_backbone
from regbench.loggers import build_logger, finish_logger, wandb_config
from regbench.norms import uses_batch_statistics
from regbench.regularizers import build_regularizers
from regbench.run.dashboard import WandbDashboard
from regbench.run.distributed import global_rank, ranks_started_outside, run_local_ranks
from regbench.run.module import ClassifierModule, upgrade_epoch_sums
from regbench.run.plan import RunPlan, checkpoint_problem
from regbench.run.provenance import provenance
from regbench.run.recorder import RunRecorder
from regbench.run.signals import SigtermFlag
from regbench.run.selection import selected_epoch
from regbench.run.subpopulations import group_metrics, groups_section
from regbench.run.trainer import build_trainer, crafted_best_checkpoint
from regbench.rundir_format import (BEST_CHECKPOINT, CHECKPOINT_DIR, COMPLETED, CONFIG_FILE, CRAFTED_BEST_CHECKPOINT,
                                    FAILED, INTERRUPTED, METRICS_FILE, RUNNING, MetricsKey, component_names,
                                    metrics_payload, read_json, write_json_atomic, write_text_atomic)
from regbench.specs.compat import BATCH_OF_ONE


def quiet_lightning() -> None:
    """Lightning's start-up chatter (GPU/TPU availability, tips) drowns the run's own lines."""
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A run's own MLflow store starts empty: "Experiment ... not found. Creating it." on every run says nothing.
    logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)
    # Expected here: resumed runs reuse their checkpoint folder; DDP on 1-channel inputs has stride-only
    # differences in size-1 dimensions.
    warnings.filterwarnings("ignore", message=r".*(srun|LeafSpec|tensorboardX|does not have many workers"
                                              r"|exists and is not empty|Grad strides do not match bucket view).*")


def check_batch_norm_batch(model: nn.Module, batch_size: int) -> None:
    """The config checks refuse a batch-statistics norm at batch 1 (check_norm_batch); a timm model may also build
    batch norms of its own, found only in the built model."""
    if batch_size == 1 and any(uses_batch_statistics(m) for m in model.modules()):
        raise UserError(BATCH_OF_ONE)


def run_payload(cfg: dict[str, Any], status: str, started: float, plan: RunPlan, **fields: Any) -> dict[str, Any]:
    return metrics_payload(cfg, status, wall_time_s=time.perf_counter() - started,
                           attempts=list(plan.resumption.attempts), provenance=provenance(), **fields)


def init_section(init: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's `init` entry: only for a run that started from saved weights."""
    return {MetricsKey.INIT: init} if init else {}


def test_metrics(trainer: L.Trainer, module: ClassifierModule, datamodule, prefix: str = "test") -> dict:
    """Test metrics of the module as it is, logged (to the loggers too) under `prefix`, so the best checkpoint's
    never overwrite the final model's in W&B's summary."""
    module.test_prefix = prefix
    try:
        results = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    finally:
        module.test_prefix = "test"
    return {key: float(value) for key, value in results.items()}


def best_test_metrics(trainer: L.Trainer, module: ClassifierModule, datamodule, best_checkpoint: Path,
                      prefix: str = "best_test") -> dict:
    """Test metrics of the best-validation weights (best.ckpt, or crafted_best.ckpt), under `prefix`. Only the
    weights are loaded: testing with `trainer.test(ckpt_path=...)` would also restore the callbacks (the recorder
    would rewrite history.csv with the rows up to the best epoch), the random streams and the data position from
    that checkpoint. An unreadable checkpoint leaves these metrics out, with one line, rather than failing the run
    (and every relaunch)."""
    problem = checkpoint_problem(best_checkpoint)
    if problem is not None:
        if trainer.is_global_zero:
            print(f"regbench train: {best_checkpoint} is unreadable ({problem}); metrics.json leaves out "
                  f"{prefix}_*", file=sys.stderr, flush=True)
        return {}
    trainer.strategy.load_model_state_dict(upgrade_epoch_sums(trainer.strategy.load_checkpoint(best_checkpoint)))
    return test_metrics(trainer, module, datamodule, prefix=prefix)


def build_run(resolved: dict[str, Any], plan: RunPlan, process_start: float, writes: bool, plugins: list,
              sigterm: SigtermFlag):
    """Everything a run needs, built from its resolved config."""
    L.seed_everything(resolved["seed"], verbose=False)
    datamodule = build_datamodule(resolved["data"], resolved["seed"])
    shape = loaded_run_shape(datamodule, resolved["trainer"]["max_epochs"], local_world_size(resolved["trainer"]))
    regularizers = build_regularizers(resolved["regularizer"], resolved["seed"], backbone=resolved["backbone"],
                                      label_noise=resolved["data"]["noise"], run=resolved)
    for reg in regularizers:
        reg.fit_run(shape)
        reg.set_class_counts(datamodule.train_class_counts)
        reg.set_image_format(datamodule.image_shape, datamodule.mean[0, :, 0, 0], datamodule.std[0, :, 0, 0])
    inactive = inactive_components(resolved, shape)
    if writes:
        warn_inactive(inactive)
    model = build_backbone(resolved["backbone"], resolved["norm"], datamodule.image_shape, datamodule.num_classes,
                           shape)
    check_batch_norm_batch(model, resolved["data"]["batch_size"])
    # A resumed run's own checkpoint holds its trained weights: the source is not loaded over them.
    resumed = plan.resumption.checkpoint is not None
    initialization = initialize_backbone(resolved["init"], model, resumed)
    init = init_report(resolved["init"], initialization.fits, model, resumed)
    module = ClassifierModule(model, regularizers, datamodule.num_classes, resolved["optim"], resolved["sched"],
                              class_weights=datamodule.class_weights, is_noisy=datamodule.is_noisy,
                              channels_last=resolved["trainer"]["channels_last"],
                              compile_model=resolved["trainer"]["compile"])
    if len(initialization.fits) == 2 and not resumed:
        initialization.initialize_pair(regularizers)
    names = component_names(resolved)
    tags = [names["data"], names["backbone"], names["norm"], *names["regularizer"].split("+")]
    logger = build_logger(resolved["logger"], plan, tags,
                          {**wandb_config(resolved), **{f"init.{key}": value for key, value in init.items()}})
    log_label_report(logger, datamodule)
    recorder = RunRecorder(plan.run_dir, print_lines=not sys.stdout.isatty(), process_start=process_start,
                           writes=writes)
    callbacks = [recorder, sigterm]
    if datamodule.crafted_shifts is not None:
        callbacks.append(crafted_best_checkpoint(plan.run_dir))
    if resolved["init"]["freeze_bn_stats"]:
        callbacks.append(FrozenNormStatistics())
    if isinstance(logger, WandbLogger):
        callbacks.append(WandbDashboard(logger, datamodule, recorder))
    trainer = build_trainer(resolved["trainer"], plan.run_dir, logger, callbacks, plugins)
    return datamodule, module, logger, recorder, trainer, inactive, init


def post_hoc_calibration(calibrators: list, module: ClassifierModule, datamodule, prefix: str,
                         sections: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The calibrators fitted on the module's validation logits and applied to its test logits: their metrics
    (under `prefix`, test or best_test), their fitted parameters and reliability bins added to `sections`."""
    if not calibrators:
        return {}
    val, test = (module.split_logits(datamodule.unsharded_batches(split)) for split in ("val", "test"))
    metrics, fitted = calibrated_report(calibrators, val, test, prefix)
    for name, section in fitted.items():
        sections.setdefault(name, {}).update(section)
    return metrics


def evaluate(trainer: L.Trainer, module: ClassifierModule, datamodule, recorder: RunRecorder,
             best_checkpoint: Path, calibrators: list, evaluations: list) -> dict[str, Any]:
    """Test the final model, then the best-validation one, each also post-hoc calibrated, run through the `eval`
    group's evaluations and (coloured datasets) scored per group; summarize the history."""
    final = test_metrics(trainer, module, datamodule)
    final_groups, final_group_report = group_metrics(module, datamodule, "test")
    calibration = module.last_test_bins
    calibrated: dict[str, dict[str, Any]] = {}
    final_calibrated = post_hoc_calibration(calibrators, module, datamodule, "test", calibrated)
    final_evaluated = run_evaluations(evaluations, module, datamodule, "test")
    reports = module.regularizer_reports(datamodule.unsharded_batches("test"), datamodule.unsharded_batches("val"),
                                         datamodule.unaugmented_train_batches)
    labels_report = label_sections(datamodule, module.last_test_per_class_acc)
    rows = recorder.rows
    best_epoch = selected_epoch(rows, "val_acc")
    best = best_test_metrics(trainer, module, datamodule, best_checkpoint)
    best_calibrated = post_hoc_calibration(calibrators, module, datamodule, "best_test", calibrated) if best else {}
    best_evaluated = run_evaluations(evaluations, module, datamodule, "best_test") if best else {}
    best_groups, best_group_report = group_metrics(module, datamodule, "best_test") if best else ({}, None)
    crafted, crafted_evaluated, crafted_report = crafted_selection(trainer, module, datamodule, rows, best_epoch,
                                                                   best_checkpoint.parent, evaluations)
    post_hoc = {**final_calibrated, **best_calibrated, **final_evaluated, **best_evaluated, **final_groups,
                **best_groups, **crafted_evaluated}
    log_end_metrics(trainer, post_hoc)
    validation = ("val_acc", "val_nll", "val_ece", *(("val_crafted_acc",) if crafted_report else ()))
    metrics = {**final, **{k: rows[-1][k] for k in (*validation, "train_loss")}, "best_epoch": best_epoch,
               **{f"best_{k}": rows[best_epoch][k] for k in validation}, **best, **crafted, **post_hoc}
    return {MetricsKey.METRICS: metrics, MetricsKey.CALIBRATION: calibration,
            **({CALIBRATED_KEY: calibrated} if calibrated else {}), MetricsKey.EPOCHS: len(rows),
            MetricsKey.CLASSES: datamodule.classes,
            MetricsKey.IMAGES_PER_S: sum(r["images_per_s"] for r in rows) / len(rows),
            MetricsKey.STARTUP_S: recorder.startup_s,
            **labels_report, **sampler_sections(datamodule, len(rows)),
            **groups_section(datamodule.num_classes, final_group_report, best_group_report), **reports,
            **crafted_report}


def crafted_selection(trainer: L.Trainer, module: ClassifierModule, datamodule, rows: list[dict[str, Any]],
                      best_epoch: int, checkpoints: Path, evaluations: list) -> tuple[dict, dict, dict]:
    """With data.crafted_val: the epoch of the best crafted-shift validation accuracy, its validation metrics and
    its weights' test metrics and evaluations (`crafted_best_*`, beside the plain selection's `best_*`), and
    metrics.json's `crafted_val` section: the fold's shift types and the epoch each selection picked."""
    if datamodule.crafted_shifts is None:
        return {}, {}, {}
    epoch = selected_epoch(rows, "val_crafted_acc")
    tested = best_test_metrics(trainer, module, datamodule, checkpoints / CRAFTED_BEST_CHECKPOINT,
                               prefix="crafted_best_test")
    evaluated = run_evaluations(evaluations, module, datamodule, "crafted_best_test") if tested else {}
    metrics = {"crafted_best_epoch": epoch, **{f"crafted_best_{k}": rows[epoch][k]
                                               for k in ("val_acc", "val_nll", "val_ece", "val_crafted_acc")},
               **tested}
    report = {**datamodule.crafted_shifts.report(), "selected_epoch": {"plain": best_epoch, "crafted": epoch}}
    return metrics, evaluated, {"crafted_val": report}


def log_end_metrics(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """The test metrics computed after trainer.test (calibrated, evaluations, per group) to every logger (W&B's
    summary keeps them beside the raw test metrics). Saved at once: the file loggers (CSV) write only on save, and
    Lightning's last save was at the end of trainer.test."""
    if metrics and trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            logger.save()


def interrupted_by(err: BaseException) -> bool:
    """Ctrl-C (Lightning turns it into SystemExit), SIGTERM (SIGTERMException), or any other request to exit."""
    return isinstance(err, (KeyboardInterrupt, SystemExit))


def run_rank(resolved: dict[str, Any], plan: RunPlan, process_start: float | None, spawned: bool) -> dict[str, Any]:
    """Train in this process (one rank of a DDP group, or the only process); rank 0 writes the results."""
    started = time.perf_counter()
    quiet_lightning()
    skip_failing_nvml_check()
    rank = global_rank()
    # Ranks spawned by regbench ignore any SLURM variables around them: the spawn made the group.
    plugins = [LightningEnvironment()] if spawned else []
    logger = None
    inactive = None  # known once the run is built
    init: dict[str, Any] = {}
    with SigtermFlag() as sigterm:
        try:
            datamodule, module, logger, recorder, trainer, inactive, init = build_run(
                resolved, plan, started if process_start is None else process_start, rank == 0, plugins, sigterm)
            evaluations = build_evaluations(resolved["eval"], resolved["data"], resolved["seed"],
                                            resolved["backbone"]["name"])
            for evaluation in evaluations:
                evaluation.prepare(datamodule)
            sigterm.raise_if_received()
            ckpt_path = str(plan.resumption.checkpoint) if plan.resumption.checkpoint else None
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            sigterm.raise_if_received()
            payload = run_payload(resolved, COMPLETED, started, plan, inactive=inactive, **init_section(init),
                                  **evaluate(trainer, module, datamodule, recorder,
                                             plan.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT,
                                             build_calibrators(resolved["calibrate"], resolved["seed"]),
                                             evaluations))
            if rank == 0:
                write_json_atomic(plan.run_dir / METRICS_FILE, payload)
            finish_logger(logger, exit_code=0)
            return payload
        except BaseException as err:
            interrupted = interrupted_by(err)
            if rank == 0:
                error = None if interrupted else f"{type(err).__name__}: {err}"
                write_json_atomic(plan.run_dir / METRICS_FILE, run_payload(
                    resolved, INTERRUPTED if interrupted else FAILED, started, plan, error=error,
                    inactive=inactive, **init_section(init)))
            finish_logger(logger, exit_code=130 if interrupted else 1)
            raise


def outcome_of(run_dir: Path) -> dict[str, Any]:
    """The metrics.json that spawned ranks wrote, as this process's own result."""
    payload = read_json(run_dir / METRICS_FILE)
    if payload is None or payload[MetricsKey.STATUS] == RUNNING:
        payload = {MetricsKey.STATUS: FAILED,
                   MetricsKey.ERROR: f"rank 0 ended without recording the outcome in {METRICS_FILE}"}
    if payload[MetricsKey.STATUS] == INTERRUPTED:
        raise SIGTERMException()
    if payload[MetricsKey.STATUS] != COMPLETED:
        raise ReportedError(payload[MetricsKey.ERROR])
    return payload


def train(resolved: dict[str, Any], plan: RunPlan, process_start: float | None = None) -> dict[str, Any]:
    """Train one planned run, in this process or in N spawned DDP processes; returns its metrics.json payload."""
    if global_rank() == 0:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan.run_dir / CONFIG_FILE, OmegaConf.to_yaml(resolved))
        # Replaced at the end; still here at the next start, it says this attempt was killed, after the earlier
        # attempts it lists.
        write_json_atomic(plan.run_dir / METRICS_FILE, run_payload(resolved, RUNNING, time.perf_counter(), plan))
    world = local_world_size(resolved["trainer"])
    if world == 1 or ranks_started_outside():
        return run_rank(resolved, plan, process_start, spawned=False)
    try:
        run_local_ranks(run_rank, (resolved, plan, None, True), world)
    except ProcessException:
        pass  # rank 0 recorded what happened in metrics.json
    return outcome_of(plan.run_dir)
