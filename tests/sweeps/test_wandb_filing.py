"""How runs are filed in W&B: group, job_type, name, a stable id resumed on restart, and failed runs as failed."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch.loggers as pl_loggers

from regbench.loggers import build_logger, finish_logger
from regbench.run.plan import HydraJob, plan_run
from regbench.sweepdir_format import SweepIndex


class FakeWandbLogger:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeRun:
    def __init__(self):
        self.exit_codes = []

    def finish(self, exit_code: int) -> None:
        self.exit_codes.append(exit_code)


def test_a_sweep_job_is_filed_in_the_sweeps_group_with_its_job_type_and_a_resumable_id(tmp_path, monkeypatch):
    monkeypatch.setattr(pl_loggers, "WandbLogger", FakeWandbLogger)
    SweepIndex(tmp_path / "2026-11-27_10-00-00").start_launch(["norm=batchnorm,groupnorm", "seed=0,1"], ["norm"],
                                                         "norm_grid/2026-11-27_10-00-00")
    job = HydraJob(multirun=True, sweep_dir=tmp_path / "2026-11-27_10-00-00", num=1,
                   overrides=("norm=groupnorm", "seed=0"))
    cfg = {"run_dir": str(job.sweep_dir / "1"), "exp_name": "norm_grid", "seed": 0}
    plan = plan_run(cfg, job)
    logger = build_logger({"name": "wandb", "wandb": {"project": "regbench", "entity": None, "mode": "offline"}},
                          plan, tags=["digits", "convnet", "groupnorm", "none"], config={"norm_name": "groupnorm"})
    assert logger.kwargs | {"save_dir": None} == {
        "project": "regbench", "entity": None, "group": "norm_grid/2026-11-27_10-00-00", "job_type": "norm=groupnorm",
        "tags": ["digits", "convnet", "groupnorm", "none"], "mode": "offline", "save_dir": None,
        "name": "norm=groupnorm seed=0", "id": plan.wandb_id, "resume": "allow", "config": {"norm_name": "groupnorm"}}
    assert Path(logger.kwargs["save_dir"]) == job.sweep_dir / "1"


def test_a_failed_run_is_finished_with_a_non_zero_exit_code():
    class Logger:
        _experiment = FakeRun()

    logger = Logger()
    finish_logger(logger, exit_code=1)
    finish_logger(None, exit_code=1)  # logger=none
    assert logger._experiment.exit_codes == [1]
