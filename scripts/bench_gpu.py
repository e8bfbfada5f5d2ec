"""GPU readiness: one ResNet-18 epoch on CIFAR-10-shaped data in `regbench train` against a raw PyTorch loop with
the same settings, measured in the same run of this script.

Both train the CIFAR-stem ResNet-18 on 50,000 generated 32x32x3 images of 10 classes (data=synthetic, resident
on the GPU), batch 512, SGD, random crop (padding 4) and flips, under bf16 autocast (trainer.precision=bf16-mixed)
with channels_last weights and batches; `--compile` adds the same pair with torch.compile (trainer.compile=true).
The first epoch warms up (and compiles); the second is timed. Finishes in under 5 minutes on one H100.

    python scripts/bench_gpu.py              # eager
    python scripts/bench_gpu.py --compile    # eager, then compiled

Without a CUDA device it prints one line and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_overhead import regbench_seconds_per_step  # noqa: E402  (the CLI side is the same as for CPUs)

from regbench.backbones import build_backbone  # noqa: E402
from regbench.data import build_datamodule  # noqa: E402
from regbench.optim import build_optimizer, build_schedule  # noqa: E402
from regbench.regularizers import soft_cross_entropy  # noqa: E402

# 50,000 training images after the synthetic set's 20 % test and 20 % validation splits.
CIFAR_SHAPED = ["data=synthetic", "data.image_size=32", "data.channels=3", "data.num_classes=10",
                "data.num_samples=78125", "data.batch_size=512", "data.augment.crop_padding=4",
                "data.augment.hflip=true", "backbone=resnet18", "norm=batchnorm", "optim=sgd", "sched=cosine",
                "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "trainer.channels_last=true",
                "trainer.deterministic=false"]
EPOCHS = 2


def raw_seconds_per_step(config: dict, compiled: bool) -> tuple[float, int]:
    """The same training as plain PyTorch: device-resident tensors, bf16 autocast, channels_last, optional
    torch.compile; the second epoch timed between device synchronizations."""
    device = torch.device("cuda")
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
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(len(labels), device=device, generator=gen)
        for i in range(steps_per_epoch):
            index = order[i * batch:(i + 1) * batch]
            x = dm.augment(stored[index], dm.image_shape[1:], gen).contiguous(memory_format=torch.channels_last)
            targets = torch.nn.functional.one_hot(labels[index], dm.num_classes).float()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = soft_cross_entropy(model(x), targets).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps_per_epoch, steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="also measure trainer.compile=true / torch.compile")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device; nothing measured")
        return
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, ResNet-18 on 50,000 generated 32x32x3 "
          f"images, batch 512, bf16-mixed, channels_last; epoch 2 of {EPOCHS} timed")
    for compiled in (False, True) if args.compile else (False,):
        overrides = [*CIFAR_SHAPED, f"trainer.compile={str(compiled).lower()}"]
        regbench_step, startup, config = regbench_seconds_per_step(overrides, EPOCHS)
        raw_step, steps = raw_seconds_per_step(config, compiled)
        print(f"{'compiled' if compiled else 'eager'}: regbench {regbench_step * steps:.2f} s/epoch "
              f"({regbench_step * 1e3:.1f} ms/step), raw PyTorch {raw_step * steps:.2f} s/epoch "
              f"({raw_step * 1e3:.1f} ms/step), ratio {regbench_step / raw_step:.3f}; "
              f"invocation to first step {startup:.1f} s")


if __name__ == "__main__":
    main()
