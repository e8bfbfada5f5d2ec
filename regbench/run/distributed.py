"""DDP without re-launching the command line: regbench starts the ranks itself.

Lightning's default DDP launcher re-runs `sys.argv` for every extra rank, which inside a Hydra `-m` sweep would
start the whole sweep again. So a run that needs N processes on this machine spawns N workers that each run the
already-planned run (rank 0 writes the results); on SLURM, one task per GPU makes the ranks and Lightning's SLURM
environment wires them up, so nothing is spawned.
"""
from __future__ import annotations

import os
import signal
import socket
from typing import Callable

import torch.multiprocessing as mp


def ranks_started_outside() -> bool:
    """torchrun (LOCAL_RANK) or a multi-task SLURM step already runs one process per rank."""
    if "LOCAL_RANK" in os.environ:
        return True
    # Lightning's test for an srun step (SLURMEnvironment.detect), without its warning that srun is unused.
    interactive = os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")
    return not interactive and int(os.environ.get("SLURM_NTASKS", "1")) > 1


def global_rank() -> int:
    """This process's rank before Lightning is up (0 when it is the only process)."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    if ranks_started_outside() and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"])
    return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(local_rank: int, target: Callable, args: tuple, world: int, port: int) -> None:
    # What torchrun would set; Lightning's LightningEnvironment reads it and does not launch processes itself.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), NODE_RANK="0",
                      LOCAL_RANK=str(local_rank), RANK=str(local_rank))
    target(*args)


def run_local_ranks(target: Callable, args: tuple, world: int) -> None:
    """Run `target(*args)` in `world` spawned processes forming one DDP group; SIGTERM and SIGINT sent to this
    process are passed on to them, so rank 0 can checkpoint and record the interruption."""
    context = mp.start_processes(_rank_main, args=(target, args, world, free_port()), nprocs=world, join=False,
                                 start_method="spawn")

    def forward(signum, frame) -> None:
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not context.join():
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
