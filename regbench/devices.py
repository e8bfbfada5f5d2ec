"""What this machine can train on: which accelerator a trainer config gets here, and that device's memory."""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from regbench.errors import UserError

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
NVML_LIBRARY = "libnvidia-ml.so.1"
CUDA_DRIVER_LIBRARY = "libcuda.so.1"
ROCM_DEVICE = "/dev/kfd"
BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
UNIT_STEP = 1000


@dataclass(frozen=True)
class DeviceMemory:
    bytes: int
    device: str  # what holds it, for messages: "the memory of GPU 0 (NVIDIA H200)", "this machine's memory"


def format_bytes(count: float) -> str:
    for unit in BYTE_UNITS[:-1]:
        if count < UNIT_STEP:
            return f"{count:.1f} {unit}"
        count /= UNIT_STEP
    return f"{count:.1f} {BYTE_UNITS[-1]}"


def skip_failing_nvml_check() -> None:
    """Lightning's import sets PYTORCH_NVML_BASED_CUDA_CHECK=1: torch then asks NVML before CUDA whether there is a
    GPU, which it does at every optimizer step (its CUDA-graph check) until CUDA starts. Where torch cannot load NVML
    (no NVIDIA driver), it asks CUDA anyway, so the attempt only adds a failed library load to each step (0.2-0.3 ms
    on a 2-core CPU, a fifth of a small MLP's step): the setting is dropped there. ROCm builds ask AMD's library
    instead."""
    import torch

    if os.environ.get(NVML_CHECK) == "1" and torch.version.hip is None and not loadable(NVML_LIBRARY):
        del os.environ[NVML_CHECK]


def loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def has_no_gpu() -> bool:
    """Whether this machine certainly has no GPU for torch, known without importing it (which takes seconds): not
    macOS (Apple's MPS), no ROCm device, and no NVIDIA driver library, without which CUDA sees no device."""
    return sys.platform != "darwin" and not os.path.exists(ROCM_DEVICE) and not loadable(CUDA_DRIVER_LIBRARY)


def _available() -> dict[str, int]:
    """Devices of each kind here, counted as Lightning counts them (without initializing CUDA)."""
    if has_no_gpu():
        return {"cpu": 1, "cuda": 0, "mps": 0}
    from lightning.fabric.accelerators.cuda import num_cuda_devices
    from lightning.fabric.accelerators.mps import MPSAccelerator

    return {"cpu": 1, "cuda": num_cuda_devices(), "mps": int(MPSAccelerator.is_available())}


def training_accelerator(cfg: Mapping[str, Any]) -> str:
    """cpu, cuda or mps: what `trainer.accelerator` selects on this machine, as Lightning resolves it (gpu is
    CUDA, else Apple's MPS; auto is the first of those present, else the CPU). A selection this machine cannot
    serve, or more devices than it has, is one UserError line."""
    accelerator, devices, available = cfg["accelerator"], cfg["devices"], _available()
    candidates = {"auto": ("cuda", "mps", "cpu"), "gpu": ("cuda", "mps")}.get(accelerator, (accelerator,))
    present = [kind for kind in candidates if available[kind]]
    if not present:
        raise UserError(f"trainer.accelerator={accelerator!r} is invalid: this machine has no "
                        f"{' or '.join(k.upper() for k in candidates)} device; use trainer.accelerator=cpu, or auto "
                        f"to take a GPU where there is one")
    kind = present[0]
    if kind != "cpu" and isinstance(devices, int) and devices > available[kind]:
        raise UserError(f"trainer.devices={devices} is invalid: this machine has {available[kind]} "
                        f"{kind.upper()} device(s) for trainer.accelerator={accelerator!r}")
    return kind


def training_memory(cfg: Mapping[str, Any]) -> DeviceMemory:
    """The memory of the device a run with trainer config `cfg` trains on here: the first GPU's for CUDA, else
    this machine's memory (the CPU's, which Apple's MPS shares)."""
    if training_accelerator(cfg) == "cuda":
        import torch

        properties = torch.cuda.get_device_properties(0)  # initializes CUDA: only asked when a check needs it
        return DeviceMemory(properties.total_memory, f"the memory of GPU 0 ({properties.name})")
    return DeviceMemory(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory")


def local_world_size(trainer_cfg: Mapping[str, Any]) -> int:
    """Processes the run needs on this machine, as Lightning would count `trainer.devices`."""
    devices = trainer_cfg["devices"]
    if isinstance(devices, int):
        return devices
    # devices=auto: every GPU when there are any, else one CPU process.
    cuda = _available()["cuda"] if trainer_cfg["accelerator"] in ("auto", "gpu", "cuda") else 0
    return cuda or 1
