"""Inference and training speed of equivalent vit_tiny variants, as ratios to Pre-LN measured in the same run:
the Pre-RMSNorm and Pre-CRMSNorm conversions of a Pre-LN model (Jiang et al., 2023: same function, less work),
and a Unified Normalization model before and after folding its norms into the linear layers (Yang et al., 2022).

    python scripts/bench_vit_norms.py            # 192 wide, 4 blocks, 64 tokens, batch 32, on CPU
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from regbench.backbones import build_backbone
from regbench.backbones.vit_crms import to_pre_crmsnorm, to_pre_rmsnorm
from regbench.backbones.vit_fuse import fuse_norms


def seconds_per_call(step, repeats: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def inference(model, x):
    def step():
        with torch.no_grad():
            model(x)
    return step


def training(model, x):
    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = {"name": "vit_tiny", "embed_dim": args.dim, "depth": args.depth, "num_heads": 3}
    pre_ln = build_backbone(backbone, {"name": "layernorm"}, (3, 32, 32), 10)
    unified = build_backbone(backbone, {"name": "unified_norm", "warmup_iters": 0}, (3, 32, 32), 10)
    models = {"Pre-LN": pre_ln, "Pre-RMSNorm": to_pre_rmsnorm(pre_ln), "Pre-CRMSNorm": to_pre_crmsnorm(pre_ln),
              "unified_norm": unified, "unified_norm fused": fuse_norms(unified.eval())}
    x = torch.randn(args.batch, 3, 32, 32)
    for mode, make_step in (("inference", inference), ("training step", training)):
        timings = {name: [] for name in models}
        for _ in range(args.trials):  # alternate the models so that load from other work hits them alike
            for name, model in models.items():
                if mode == "inference" or name != "unified_norm fused":
                    model.train(mode != "inference")
                    timings[name].append(seconds_per_call(make_step(model, x), args.repeats))
        base = statistics.median(timings["Pre-LN"])
        for name, values in timings.items():
            if values:
                median = statistics.median(values)
                print(f"{mode:13s} {name:20s} {median * 1e3:8.2f} ms  ratio to Pre-LN {median / base:.3f}")


if __name__ == "__main__":
    main()
