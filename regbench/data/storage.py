"""Where a folder dataset's images live: decoded once into memory (the in-memory batches of module.py) or
streamed from the files each epoch (stream.py). `auto` keeps them in memory when the in-memory path's copy fits
in data.max_memory_gb: it holds every image as float32 on the training device, 4 bytes per pixel value."""
from __future__ import annotations

from typing import Any, Mapping

from regbench.errors import UserError

IN_MEMORY_BYTES_PER_VALUE = 4
GIB = 1024 ** 3


def in_memory_gib(decoded_bytes: int) -> float:
    return decoded_bytes * IN_MEMORY_BYTES_PER_VALUE / GIB


def choose_storage(cfg: Mapping[str, Any], decoded_bytes: int) -> str:
    """'memory' or 'stream' for a dataset whose stored views take `decoded_bytes` as uint8."""
    storage, limit = cfg["storage"], cfg["max_memory_gb"]
    needed = in_memory_gib(decoded_bytes)
    if storage == "memory" and needed > limit:
        raise UserError(f"data.storage=memory: {cfg['name']} takes {needed:.1f} GiB in memory (float32), more than "
                        f"data.max_memory_gb={limit}; use data.storage=stream (or auto), or raise data.max_memory_gb")
    if storage == "auto":
        return "memory" if needed <= limit else "stream"
    return storage
