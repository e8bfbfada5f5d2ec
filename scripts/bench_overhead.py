"""Overhead of `regbench train` against a minimal hand-written PyTorch loop, measured in the same process run.

Both train the same model on the same in-memory data with the same batch size, augmentation, optimizer and
schedule; the ratio compares steady-state seconds per training step (epochs after the first, validation
excluded). Also prints the time from `regbench train` invocation to its first training step.

    python scripts/bench_overhead.py                    # every case
    python scripts/bench_overhead.py --case mlp         # the cases whose name contains "mlp"

The two alternate over `--trials` trials and the medians are reported, so load from other processes on a shared
machine hits both sides alike.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from regbench.backbones import build_backbone
from regbench.data import build_datamodule
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


def regbench_seconds_per_step(overrides: list[str], epochs: int) -> tuple[float, float, dict]:
    """Run the real CLI; read steady-state step time and start-up time from its run directory."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "regbench", "train", "logger=none", f"trainer.max_epochs={epochs}",
               f"hydra.run.dir={tmp}/run", *overrides]
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
        rows = list(csv.DictReader(open(f"{tmp}/run/history.csv")))
        metrics = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
        config = OmegaConf.to_container(OmegaConf.load(f"{tmp}/run/config.yaml"))
    steady = rows[1:]
    steps = sum(float(r["images_per_s"]) * float(r["train_time_s"]) for r in steady) / config["data"]["batch_size"]
    seconds = sum(float(r["train_time_s"]) for r in steady)
    return seconds / round(steps), metrics["startup_s"], config


def hand_written_seconds_per_step(config: dict, epochs: int) -> float:
    """The same training, as few lines of plain PyTorch as possible."""
    torch.manual_seed(config["seed"])
    dm = build_datamodule(config["data"], config["seed"])
    model = build_backbone(config["backbone"], config["norm"], dm.image_shape, dm.num_classes)
    images, labels, _ = dm.splits["train"]
    pad = config["data"]["augment"]["crop_padding"]
    images = dm.normalize(images)
    padded = torch.nn.functional.pad(images, (pad,) * 4, mode="reflect") if pad else images
    batch, height, width = config["data"]["batch_size"], *images.shape[-2:]
    steps_per_epoch = len(labels) // batch
    optimizer = build_optimizer(config["optim"], model)
    schedule = build_schedule(config["sched"], optimizer, steps_per_epoch, steps_per_epoch * epochs)
    model.train()
    timed, steps = 0.0, 0
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(labels))
        for i in range(steps_per_epoch):
            index = order[i * batch:(i + 1) * batch]
            x = padded[index]
            if pad:
                dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
                x = x[:, :, dy:dy + height, dx:dx + width]  # one shift per batch: cheaper than regbench's
            loss = soft_cross_entropy(model(x), torch.nn.functional.one_hot(labels[index], dm.num_classes).float())
            optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            optimizer.step()
            schedule.step()
        if epoch > 0:
            timed += time.perf_counter() - start
            steps += steps_per_epoch
    return timed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--case", default="", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs (first one untimed), "
          f"median of {args.trials} alternating trials")
    for name, overrides in CASES.items():
        if args.case not in name:
            continue
        trials = []
        for _ in range(args.trials):
            regbench_step, startup, config = regbench_seconds_per_step(overrides, args.epochs)
            trials.append((regbench_step, hand_written_seconds_per_step(config, args.epochs), startup))
        regbench_step, hand_step, startup = (statistics.median(column) for column in zip(*trials))
        ratio = statistics.median(r / h for r, h, _ in trials)
        print(f"{name}: regbench {regbench_step * 1e3:.2f} ms/step, hand-written {hand_step * 1e3:.2f} ms/step, "
              f"ratio {ratio:.3f} (trials: {', '.join(f'{r / h:.3f}' for r, h, _ in trials)}); "
              f"invocation to first step {startup:.2f} s")


if __name__ == "__main__":
    main()
