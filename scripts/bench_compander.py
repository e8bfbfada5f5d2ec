"""Training-step overhead of the Weight Compander against the plain network, measured in the same process run.

A step is forward, backward, the compander's decay on Psi(v) (fixed version) and the SGD step, on random
in-memory batches. The paper reports 7-14 % training overhead (GPU, full models). Plain and companded networks
alternate over `--trials` trials and the medians are reported, so load from other processes hits both alike.

    python scripts/bench_compander.py [--trials 3] [--steps 20]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn

from regbench.backbones import build_backbone
from regbench.optim import build_optimizer
from regbench.regularizers import create_regularizer

OPTIM = {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4, "momentum": 0.9, "nesterov": True}
CASES = {
    "convnet 32-64-128, 32x32 batch 128": ({"name": "convnet", "widths": [32, 64, 128]}, (3, 32, 32), 128),
    "resnet18 width 8, 32x32 batch 32": ({"name": "resnet18", "width": 8}, (3, 32, 32), 32),
}


def seconds_per_step(model: nn.Module, reg, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    optimizer = build_optimizer(OPTIM, model)
    if reg is not None:
        reg.configure_optimizer(optimizer)
    model.train()
    for warm in (True, False):
        start = time.perf_counter()
        for _ in range(2 if warm else steps):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images), labels).backward()
            if reg is not None:
                reg.on_before_optimizer_step(optimizer)
            optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--case", choices=list(CASES), action="append", help="only these cases (default: all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.trials} trials of {args.steps} steps")
    for case in args.case or CASES:
        backbone, shape, batch = CASES[case]
        plain = build_backbone(backbone, {"name": "batchnorm"}, shape, 10)
        images, labels = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
        times: dict[str, list[float]] = {"plain": [], "fixed": [], "learnable": []}
        for _ in range(args.trials):
            times["plain"].append(seconds_per_step(copy.deepcopy(plain), None, images, labels, args.steps))
            for variant in ("fixed", "learnable"):
                reg = create_regularizer("weight_compander", learnable=variant == "learnable")
                model = reg.wrap_model(copy.deepcopy(plain))
                times[variant].append(seconds_per_step(model, reg, images, labels, args.steps))
        base = statistics.median(times["plain"])
        for variant in ("fixed", "learnable"):
            ratios = [t / p for t, p in zip(times[variant], times["plain"])]
            print(f"{case}: plain {base * 1e3:.1f} ms/step, {variant} {statistics.median(times[variant]) * 1e3:.1f} "
                  f"ms/step, ratio {statistics.median(ratios):.3f} ({', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
