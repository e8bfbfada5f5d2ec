"""DDP without re-launching the command line: regbench starts the ranks itself.

Lightning's default DDP launcher re-runs `sys.argv` for every extra rank, which inside a Hydra `-m` sweep would
start the whole sweep again. So a run that needs N processes on this machine spawns N workers that each run the
already-planned run (rank 0 writes the results); on SLURM, one task per GPU makes the ranks and Lightning's SLURM
environment wires them up, so nothing is spawned.
"""
from __future__ import annotations

import os
import random
import signal
import socket
from pathlib import Path
from typing import Callable

import torch.multiprocessing as mp

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_DRAWN_PORT = 10000  # below it sit the well-known services' ports


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


def ephemeral_ports(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The ports the kernel hands to any socket that asks for one (Linux's default where the file is absent)."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def bound_port(port: int) -> int | None:
    """`port` (0: one the kernel picks) if a socket can bind it now, else None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None
        return sock.getsockname()[1]


def free_port(ephemeral: range | None = None) -> int:
    """A port for rank 0's store that is free now. The ranks bind it seconds later, once they have started; a port
    of the ephemeral range may go to any other socket meanwhile (another run's gloo connections, say), so the port
    is drawn outside that range, at random (not from the seeded `random`: concurrent runs share seeds)."""
    ephemeral = ephemeral_ports() if ephemeral is None else ephemeral
    outside = [*range(LOWEST_DRAWN_PORT, ephemeral.start), *range(ephemeral.stop, 65536)]
    if outside:
        draw = random.SystemRandom()
        for _ in range(100):
            port = draw.choice(outside)
            if bound_port(port) is not None:
                return port
    return bound_port(0)  # no room outside the range: the kernel's pick


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
