"""Overhead of `regbench train`'s step against a minimal hand-written PyTorch step, measured interleaved.

`regbench train` runs in a child process of this script with one extra callback: every `--block` training steps it
runs `--block` steps of a hand-written loop (the same network copied at the start, the same optimizer, schedule,
batch size, data and augmentation) and times them. Lightning's steps are timed between the starts of consecutive
steps, less the hand-written blocks; epochs after the first count, validation does not. Each block of regbench
steps is compared with the hand-written block that ran just before it, so the machine's load at that moment (these
2-core machines are shared and vary by a third from minute to minute) hits both sides alike. Start-up is
`scripts/bench_startup.py`'s.

    python scripts/bench_overhead.py                    # every case
    python scripts/bench_overhead.py --case mlp         # the cases whose name contains "mlp"

Reported per case: the median over trials (one child process each) of the median block ratio.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

import regbench.run.train
from regbench.cli import main as regbench_main
from regbench.devices import NVML_CHECK
from regbench.optim import build_optimizer, build_schedule
from regbench.regularizers import soft_cross_entropy

MNIST_RAW = Path("/work/shared/data/MNIST/raw")
# The CPU-scale claim cards' shape: an MLP 784-64-128-64 with BN, batch 128, Adam, no augmentation. Real MNIST
# where its files are, else MNIST-shaped synthetic tensors (the same step cost: 28x28x1 inputs, 10 classes).
MLP_SETTINGS = ["backbone=mlp", "backbone.hidden=[64,128,64]", "norm=batchnorm", "optim=adamw",
                "optim.weight_decay=0", "sched=constant", "data.batch_size=128", "data.augment.crop_padding=0"]
MLP_DATA = (["data=mnist", f"data.root={MNIST_RAW.parent.parent}", "data.cache=false"] if MNIST_RAW.is_dir() else
            ["data=synthetic", "data.image_size=28", "data.num_samples=70000", "data.num_classes=10"])
MLP_CASE = f"mlp 784-64-128-64 BN, {'MNIST' if MNIST_RAW.is_dir() else 'synthetic 28x28 (no MNIST files)'}, batch 128"

CASES = {
    MLP_CASE: MLP_DATA + MLP_SETTINGS,
    # MNIST-sized inputs without needing the MNIST files: seeded blobs rendered at 28x28.
    "convnet 28x28 batch 256": ["data=synthetic", "data.image_size=28", "data.num_samples=8000",
                                "data.num_classes=10", "data.batch_size=256", "data.augment.crop_padding=2"],
    "digits default (8x8 batch 64)": [],
}


class HandWrittenLoop:
    """The same training as few lines of plain PyTorch as possible, on its own copy of the network."""

    def __init__(self, module, datamodule, total_steps: int):
        self.network = copy.deepcopy(module.model)
        self.optimizer = build_optimizer(module.optim_cfg, self.network)
        steps_per_epoch = len(datamodule.train_dataloader())
        self.schedule = build_schedule(module.sched_cfg, self.optimizer, steps_per_epoch, total_steps)
        images, self.labels, _ = datamodule.splits["train"]
        images = datamodule.normalize(images)
        self.pad = datamodule.augment.crop_padding
        self.padded = torch.nn.functional.pad(images, (self.pad,) * 4, mode="reflect") if self.pad else images
        self.height, self.width = images.shape[-2:]
        self.batch_size, self.num_classes = datamodule.batch_size, datamodule.num_classes

    def seconds_per_step(self, steps: int) -> float:
        # Lightning's import sets NVML_CHECK (see regbench.devices); a hand-written script never imports Lightning.
        lightning_setting = os.environ.pop(NVML_CHECK, None)
        try:
            return self.timed_steps(steps)
        finally:
            if lightning_setting is not None:
                os.environ[NVML_CHECK] = lightning_setting

    def timed_steps(self, steps: int) -> float:
        start = time.perf_counter()
        order = torch.randperm(len(self.labels))
        for i in range(steps):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            images = self.padded[index]
            if self.pad:
                dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
                images = images[:, :, dy:dy + self.height, dx:dx + self.width]  # one shift per batch: cheaper
            targets = torch.nn.functional.one_hot(self.labels[index], self.num_classes).float()
            loss = soft_cross_entropy(self.network(images), targets).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.schedule.step()
        return (time.perf_counter() - start) / steps


class InterleavedHandWrittenSteps(L.Callback):
    """Pairs each block of `block` regbench steps with the hand-written block run just before it; `pairs` holds
    (regbench, hand-written) seconds per step, epochs after the first, and is written to $BENCH_OVERHEAD_PAIRS."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.pairs: list[tuple[float, float]] = []
        self.hand_written: HandWrittenLoop | None = None

    def on_fit_start(self, trainer, module) -> None:
        steps = len(trainer.datamodule.train_dataloader()) * trainer.max_epochs
        self.hand_written = HandWrittenLoop(module, trainer.datamodule, steps)

    def on_train_epoch_start(self, trainer, module) -> None:
        self.step_started = None  # the epoch boundary (validation) is not a step
        self.steps, self.seconds = 0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self.step_started is not None:
            self.steps, self.seconds = self.steps + 1, self.seconds + now - self.step_started
        if batch_idx % self.block == 0:
            if self.steps == self.block and trainer.current_epoch > 0:
                self.pairs.append((self.seconds / self.steps, self.hand_step))
            self.hand_step = self.hand_written.seconds_per_step(self.block)
            self.steps, self.seconds = 0, 0.0
        self.step_started = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        Path(os.environ["BENCH_OVERHEAD_PAIRS"]).write_text(json.dumps(self.pairs))


def run_case_here(overrides: list[str], block: int) -> None:
    """In the child: the real `regbench train`, its trainer built with the interleaving callback added (the one
    change to the measured path, made by wrapping the function that builds the trainer)."""
    build_trainer = regbench.run.train.build_trainer

    def with_interleaving(cfg, run_dir, logger, callbacks, plugins=()):
        return build_trainer(cfg, run_dir, logger, [*callbacks, InterleavedHandWrittenSteps(block)], plugins)

    regbench.run.train.build_trainer = with_interleaving
    sys.argv = ["regbench", "train", *overrides]
    regbench_main()


def trial(overrides: list[str], epochs: int, block: int) -> list[tuple[float, float]]:
    """One child process: the (regbench, hand-written) seconds per step of each block."""
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.json"
        cmd = [sys.executable, __file__, "--child", "--block", str(block), "--", "logger=none",
               f"trainer.max_epochs={epochs}", f"hydra.run.dir={tmp}/run", *overrides]
        subprocess.run(cmd, check=True, capture_output=True,
                       env={**os.environ, "WANDB_MODE": "offline", "BENCH_OVERHEAD_PAIRS": str(pairs_file)})
        return [tuple(pair) for pair in json.loads(pairs_file.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--block", type=int, default=10, help="steps in each interleaved block")
    parser.add_argument("--case", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_case_here(args.overrides, args.block)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs (first one untimed), "
          f"blocks of {args.block} steps, median of {args.trials} trials")
    for name, overrides in CASES.items():
        if args.case not in name:
            continue
        ratios, regbench_steps, hand_steps = [], [], []
        for _ in range(args.trials):
            pairs = trial(overrides, args.epochs, args.block)
            ratios.append(statistics.median(ours / hand for ours, hand in pairs))
            regbench_steps.append(statistics.median(ours for ours, _ in pairs))
            hand_steps.append(statistics.median(hand for _, hand in pairs))
        print(f"{name}: regbench {statistics.median(regbench_steps) * 1e3:.2f} ms/step, hand-written "
              f"{statistics.median(hand_steps) * 1e3:.2f} ms/step, ratio {statistics.median(ratios):.3f} "
              f"(trials: {', '.join(f'{r:.3f}' for r in ratios)}; {len(pairs)} blocks each)", flush=True)


if __name__ == "__main__":
    main()
