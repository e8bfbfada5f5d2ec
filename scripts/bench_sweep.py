"""What a local sweep saves: N jobs in one `regbench train -m` process against N separate `regbench train` runs,
measured in the same script run (wall-clock seconds, including start-up).

    python scripts/bench_sweep.py --jobs 4      # digits, one epoch per job
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

TINY = ["logger=none", "trainer.max_epochs=1"]


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env={**os.environ, "WANDB_MODE": "offline"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args()
    regbench = [sys.executable, "-m", "regbench", "train"]
    with tempfile.TemporaryDirectory() as tmp:
        seeds = ",".join(str(seed) for seed in range(args.jobs))
        sweep = timed([*regbench, "-m", *TINY, f"seed={seeds}", "hydra.sweep.dir=sweep"], tmp)
        separate = sum(timed([*regbench, *TINY, f"seed={seed}", f"hydra.run.dir=run{seed}"], tmp)
                       for seed in range(args.jobs))
    print(f"{args.jobs} digits jobs, 1 epoch each: one sweep process {sweep:.1f} s, separate runs {separate:.1f} s, "
          f"ratio {sweep / separate:.2f}; per job {sweep / args.jobs:.2f} s vs {separate / args.jobs:.2f} s")


if __name__ == "__main__":
    main()
