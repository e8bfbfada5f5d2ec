"""Fixtures shared by the compare tests."""

import json
from pathlib import Path

import pytest
from compare_rundirs import acc_metrics, write_run


@pytest.fixture
def sweep(tmp_path: Path) -> dict:
    """A sweep of none vs cutmix vs mixup over seeds 0..3, laid out as a Hydra multirun (jobs 0/, 1/, ...).

    Returns the sweep directory and the test_acc values per regularizer, in seed order.
    """
    values = {
        "none": [0.900, 0.910, 0.905, 0.895],
        "cutmix": [0.920, 0.935, 0.921, 0.918],
        "mixup": [0.899, 0.915, 0.902, 0.901],
    }
    regularizers = {"none": {}, "cutmix": {"cutmix": {"alpha": 1.0, "prob": 1.0}},
                    "mixup": {"mixup": {"alpha": 0.2}}}
    root = tmp_path / "multirun" / "reg_vs_baseline"
    job = 0
    for name, accs in values.items():
        for seed, acc in enumerate(accs):
            write_run(root / str(job), seed=seed, metrics=acc_metrics(acc), regularizer=regularizers[name])
            job += 1
    (root / "sweep.json").write_text(json.dumps({"jobs": job}))
    return {"dir": root, "values": values}


@pytest.fixture(scope="session")
def real_sweep(tmp_path_factory, run_command) -> Path:
    """none vs mixup over seeds 0 and 1 on noisy, long-tailed digits: 4 real `regbench train` runs of 2 epochs.

    logger=csv, so each run also keeps the exact sequence of logger calls (csv_logs/metrics.csv) that W&B gets.
    """
    root = tmp_path_factory.mktemp("real_sweep")
    result = run_command(["train", "-m", "logger=csv", "trainer.max_epochs=2", "backbone.widths=[8]",
                          "data.noise.type=symmetric", "data.noise.rate=0.2", "data.imbalance.type=exponential",
                          "data.imbalance.factor=2", "regularizer=[none],[mixup]", "seed=0,1", "hydra.sweep.dir=sweep"],
                         root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "sweep"
