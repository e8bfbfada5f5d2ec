"""Start-up of the regbench commands against `python -c "import torch"`, measured in the same run (wall-clock
seconds from invocation, median of several repeats): the commands that train nothing (help, compare, a printed
config, a config mistake) and `regbench train` to its first training step, on digits and, when
../shared/data/MNIST/raw exists (relative to the repository root), on MNIST. `import lightning.pytorch` is
measured too, as a reference: no Lightning-based `train` can start faster than that import; and so is a bare
Lightning program (one linear layer on random tensors, no loggers, checkpoints or config) to its first step.

    python scripts/bench_startup.py --repeats 5 [--data-root ../shared/data]

The first step is the moment the first training epoch starts, which a run writes to the file named by
REGBENCH_STARTUP_MARK (see regbench/run/recorder.py); the script stops the run there.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGBENCH = [sys.executable, "-m", "regbench"]
TRAIN_FIRST_STEP_TIMEOUT_S = 300
# Targets of issue 11: commands that train nothing under 1 s; train start-up at most 1.5x import torch.
LIGHT_TARGET_S, TRAIN_TARGET_RATIO = 1.0, 1.5


# The least a Lightning program does before its first step: import, build a module and a Trainer, start fit.
BARE_LIGHTNING = """
import os, sys, time
import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

class Bare(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)
    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
    def on_train_epoch_start(self):
        with open(os.environ["REGBENCH_STARTUP_MARK"], "w") as mark:
            mark.write(f"{time.time()}\\n")

data = DataLoader(TensorDataset(torch.randn(256, 64), torch.randint(0, 10, (256,))), batch_size=64)
pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
           enable_model_summary=False, default_root_dir=sys.argv[1]).fit(Bare(), data)
"""


def env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def timed(cmd: list[str], cwd: Path, expect: int) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env())
    elapsed = time.perf_counter() - start
    if result.returncode != expect:
        sys.exit(f"{' '.join(cmd[2:])}: exit {result.returncode}, expected {expect}: {result.stderr[-500:]}")
    return elapsed


def first_step(args: list[str], cwd: Path, mark: Path) -> float:
    """Seconds from invocation of `regbench train ARGS` to its first training epoch's start (in a new run
    directory); the run is stopped there."""
    run_dir = tempfile.mkdtemp(dir=cwd, prefix="run")
    return seconds_to_mark([*REGBENCH, "train", *args, f"hydra.run.dir={run_dir}"], f"train {' '.join(args)}", cwd,
                           mark)


def seconds_to_mark(command: list[str], label: str, cwd: Path, mark: Path) -> float:
    """Seconds from invocation of `command` to the time it writes to $REGBENCH_STARTUP_MARK; stopped there."""
    mark.unlink(missing_ok=True)
    start_wall = time.time()
    process = subprocess.Popen(command, cwd=cwd,
                               env={**env(), "REGBENCH_STARTUP_MARK": str(mark)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        while not mark.exists() or not mark.read_text().endswith("\n"):
            if process.poll() is not None:
                sys.exit(f"{label} ended before its first step: {process.stderr.read()[-500:]}")
            if time.time() - start_wall > TRAIN_FIRST_STEP_TIMEOUT_S:
                sys.exit(f"{label}: no first step within {TRAIN_FIRST_STEP_TIMEOUT_S} s")
            time.sleep(0.01)
        return float(mark.read_text()) - start_wall
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data",
                        help="where MNIST/raw is looked for (default: ../shared/data from the repository root)")
    args = parser.parse_args()
    repeats, mnist_raw = args.repeats, args.data_root.resolve() / "MNIST" / "raw"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mark = work / "first_step"
        cases: list[tuple[str, callable, str]] = [
            ('python -c "import torch"', lambda: timed([sys.executable, "-c", "import torch"], work, 0), "baseline"),
            # The floor under any Lightning-based `train`: importing Lightning alone, before any regbench code.
            ('python -c "import lightning.pytorch"',
             lambda: timed([sys.executable, "-c", "import lightning.pytorch"], work, 0), "reference"),
            ("a bare Lightning program, to the first step",
             lambda: seconds_to_mark([sys.executable, "-c", BARE_LIGHTNING, tempfile.mkdtemp(dir=work)],
                                     "the bare Lightning program", work, mark),
             "reference"),
            ("regbench --help", lambda: timed([*REGBENCH, "--help"], work, 0), "light"),
            ("regbench compare --help", lambda: timed([*REGBENCH, "compare", "--help"], work, 0), "light"),
            ("regbench train --help", lambda: timed([*REGBENCH, "train", "--help"], work, 0), "light"),
            ("regbench train --cfg job", lambda: timed([*REGBENCH, "train", "--cfg", "job"], work, 0), "light"),
            ("regbench train norm=no_such_norm", lambda: timed([*REGBENCH, "train", "norm=no_such_norm"], work, 2),
             "light"),
            # Mistakes found from the run's planned shape and this machine's files, still before torch loads.
            ("regbench train data.batch_size=5000",
             lambda: timed([*REGBENCH, "train", "data.batch_size=5000"], work, 2), "light"),
            ("regbench train data=mnist data.root=nowhere",
             lambda: timed([*REGBENCH, "train", "data=mnist", "data.root=nowhere"], work, 2), "light"),
            # A setting harmful on the run's shape (a hole as wide as the 8x8 images), still before torch loads.
            ("regbench train regularizer=[cutout] regularizer.cutout.length=100",
             lambda: timed([*REGBENCH, "train", "regularizer=[cutout]", "regularizer.cutout.length=100"], work, 2),
             "light"),
            # A mistake found only by the built components (the compander's check of the optimizer): torch loads.
            ("regbench train regularizer=[weight_compander] optim=adamw",
             lambda: timed([*REGBENCH, "train", "regularizer=[weight_compander]", "optim=adamw"], work, 2), "light"),
        ]
        for logger in ("none", "wandb"):
            cases.append((f"regbench train logger={logger} (digits), to the first step",
                          lambda logger=logger: first_step([f"logger={logger}"], work, mark),
                          "train"))
        if mnist_raw.is_dir():
            (work / "data" / "MNIST").mkdir(parents=True)
            (work / "data" / "MNIST" / "raw").symlink_to(mnist_raw)  # its cache is written under data/, not shared
            first_step(["data=mnist", "logger=none"], work, mark)  # builds the cache once
            cases.append(("regbench train data=mnist logger=none, to the first step",
                          lambda: first_step(["data=mnist", "logger=none"], work, mark), "train"))
        else:
            print(f"({mnist_raw} not found: MNIST not measured)")
        times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        for _ in range(repeats):  # interleaved, so load on the machine hits every case alike
            for label, measure, _ in cases:
                times[label].append(measure())
    baseline = statistics.median(times[cases[0][0]])
    print(f"median of {repeats} repeats; ratio = seconds / import torch")
    print(f"{'command':60s} {'seconds':>8s} {'ratio':>6s}  target")
    for label, _, kind in cases:
        seconds = statistics.median(times[label])
        target = {"baseline": "", "reference": "", "light": f"< {LIGHT_TARGET_S:g} s",
                  "train": f"<= {TRAIN_TARGET_RATIO:g}x"}[kind]
        met = {"baseline": True, "reference": True, "light": seconds < LIGHT_TARGET_S,
               "train": seconds / baseline <= TRAIN_TARGET_RATIO}[kind]
        print(f"{label:60s} {seconds:8.2f} {seconds / baseline:6.2f}  {target}{'' if met else '  (missed)'}")


if __name__ == "__main__":
    main()
