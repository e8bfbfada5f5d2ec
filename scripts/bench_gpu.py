"""GPU readiness: one ResNet-18 epoch on CIFAR-10-shaped data in `regbench train` against a raw PyTorch loop with
the same settings, measured in the same run of this script.

Both train the CIFAR-stem ResNet-18 on 50,000 generated 32x32x3 images of 10 classes (data=synthetic, resident
on the GPU), batch 512, SGD, random crop (padding 4) and flips, under bf16 autocast (trainer.precision=bf16-mixed)
with channels_last weights and batches; `--compile` adds the same pair with torch.compile (trainer.compile=true).
The first epoch warms up (and compiles); the second is timed. Finishes in under 5 minutes on one H100.

    python scripts/bench_gpu.py              # eager
    python scripts/bench_gpu.py --compile    # eager, then compiled
    python scripts/bench_gpu.py --device cpu --num-samples 100 --batch-size 16   # the same code on a CPU (a check)

Without a CUDA device it prints one line and exits 0.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

# 50,000 training images after the synthetic set's 20 % test and 20 % validation splits.
CIFAR_SHAPED = ["data=synthetic", "data.image_size=32", "data.channels=3", "data.num_classes=10",
                "data.augment.crop_padding=4", "data.augment.hflip=true", "backbone=resnet18",
                "norm=batchnorm", "optim=sgd", "sched=cosine", "trainer.precision=bf16-mixed",
                "trainer.channels_last=true", "trainer.deterministic=false"]
NUM_SAMPLES, BATCH_SIZE = 78125, 512
ACCELERATORS = {"cuda": "gpu", "cpu": "cpu"}
EPOCHS = 2


def regbench_seconds_per_step(overrides: list[str], epochs: int) -> tuple[float, float, dict]:
    """Run the real CLI; the last epoch's seconds per step, the start-up, and the resolved config, from its run
    directory."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "regbench", "train", "logger=none", f"trainer.max_epochs={epochs}",
                   f"hydra.run.dir={tmp}/run", *overrides]
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
        last = list(csv.DictReader(open(f"{tmp}/run/history.csv")))[-1]
        metrics = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
        config = OmegaConf.to_container(OmegaConf.load(f"{tmp}/run/config.yaml"))
    steps = round(float(last["images_per_s"]) * float(last["train_time_s"]) / config["data"]["batch_size"])
    return float(last["train_time_s"]) / steps, metrics["startup_s"], config


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def raw_seconds_per_step(config: dict, compiled: bool, device: torch.device) -> tuple[float, int]:
    """The same training as plain PyTorch: device-resident tensors, bf16 autocast, channels_last, optional
    torch.compile; the last epoch timed between device synchronizations."""
    from regbench.backbones import build_backbone
    from regbench.data.module import build_datamodule
    from regbench.optim import build_optimizer, build_schedule
    from regbench.regularizers import soft_cross_entropy

    torch.manual_seed(config["seed"])
    dm = build_datamodule(config["data"], config["seed"])
    images, labels, _ = dm.splits["train"]
    images, labels = dm.normalize(images.to(device)), labels.to(device)
    stored = dm.augment.prepare(images)
    model = build_backbone(config["backbone"], config["norm"], dm.image_shape, dm.num_classes)
    model = model.to(device, memory_format=torch.channels_last)
    if compiled:
        model.compile()
    batch = config["data"]["batch_size"]
    steps_per_epoch = len(labels) // batch
    optimizer = build_optimizer(config["optim"], model)
    schedule = build_schedule(config["sched"], optimizer, steps_per_epoch, steps_per_epoch * EPOCHS)
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    model.train()
    for epoch in range(EPOCHS):
        synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(len(labels), device=device, generator=gen)
        for i in range(steps_per_epoch):
            index = order[i * batch:(i + 1) * batch]
            x = dm.augment(stored[index], dm.image_shape[1:], gen).contiguous(memory_format=torch.channels_last)
            targets = torch.nn.functional.one_hot(labels[index], dm.num_classes).float()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = soft_cross_entropy(model(x), targets).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        synchronize(device)
    return (time.perf_counter() - start) / steps_per_epoch, steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also measure trainer.compile=true / torch.compile")
    parser.add_argument("--device", choices=sorted(ACCELERATORS), default="cuda",
                        help="cuda (the measurement); cpu runs the same code, to check it")
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES,
                        help=f"generated images before the test and validation splits (default {NUM_SAMPLES}: "
                             f"50,000 to train on)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"default {BATCH_SIZE}")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; nothing measured")
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, ResNet-18 on {args.num_samples} generated 32x32x3 images, batch "
          f"{args.batch_size}, bf16-mixed, channels_last; epoch {EPOCHS} of {EPOCHS} timed")
    for compiled in (False, True) if args.compile else (False,):
        overrides = [*CIFAR_SHAPED, f"data.num_samples={args.num_samples}", f"data.batch_size={args.batch_size}",
                     f"trainer.accelerator={ACCELERATORS[args.device]}", f"trainer.compile={str(compiled).lower()}"]
        regbench_step, startup, config = regbench_seconds_per_step(overrides, EPOCHS)
        raw_step, steps = raw_seconds_per_step(config, compiled, device)
        print(f"{'compiled' if compiled else 'eager'}: regbench {regbench_step * steps:.2f} s/epoch "
              f"({regbench_step * 1e3:.1f} ms/step), raw PyTorch {raw_step * steps:.2f} s/epoch "
              f"({raw_step * 1e3:.1f} ms/step), ratio {regbench_step / raw_step:.3f}; "
              f"invocation to first step {startup:.1f} s")


if __name__ == "__main__":
    main()
