"""Where `init.from` points, checked without torch: a run directory (its best checkpoint), RUN_DIR/best or
RUN_DIR/last, or a weights file (a Lightning .ckpt, a torch .pt/.pth state dict, a .safetensors file). The config
checks call `check_init_config` before any run directory exists."""
from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from regbench.errors import UserError, check
from regbench.rundir_format import BEST_CHECKPOINT, CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT

# What `RUN_DIR/<selector>` loads; a bare run directory loads its best-validation weights.
CHECKPOINT_SELECTORS = {"best": BEST_CHECKPOINT, "last": LAST_CHECKPOINT}
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth")
SAFETENSORS_SUFFIX = ".safetensors"
FLAGS = ("strict", "reset_head", "freeze_bn_stats")
# A pickle stream's first byte (protocol 2 and later): torch.save's legacy, non-zip format.
PICKLE_PROTOCOL_MARK = 0x80
# The regularizer whose network pair takes one source per network.
PAIR_REGULARIZER = "coteaching"


@dataclass(frozen=True)
class InitSource:
    """One resolved `init.from` entry."""

    given: str  # as the config says
    path: Path  # the weights file, absolute
    checkpoint: str  # "best" or "last" for a run directory's checkpoint, "file" for a weights file
    run_dir: Path | None  # the source run directory, when it is one

    @property
    def is_safetensors(self) -> bool:
        return self.path.suffix == SAFETENSORS_SUFFIX


def init_sources(init: Mapping[str, Any]) -> list[InitSource]:
    """The resolved sources of `init.from`: none, one, or a list (one per network of a pair)."""
    given = init["from"]
    if given is None:
        return []
    entries = list(given) if isinstance(given, (list, tuple)) else [given]
    return [resolve_source(entry) for entry in entries]


def resolve_source(given: Any) -> InitSource:
    key = "init.from"
    check(isinstance(given, str) and given != "", key, given,
          "must be a run directory, RUN_DIR/best, RUN_DIR/last or a .ckpt/.pt/.pth/.safetensors file")
    path = Path(given).expanduser().absolute()
    if path.is_dir():
        return run_dir_source(given, path, "best")
    if path.name in CHECKPOINT_SELECTORS and not path.exists() and path.parent.is_dir():
        return run_dir_source(given, path.parent, path.name)
    if not path.exists():
        raise UserError(f"{key}={given!r} is invalid: no such file or directory")
    suffixes = (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX)
    check(path.suffix in suffixes, key, given,
          f"a weights file must end in {', '.join(suffixes)} (or give a run directory)")
    problem = safetensors_problem(path) if path.suffix == SAFETENSORS_SUFFIX else torch_file_problem(path)
    if problem:
        raise UserError(f"{key}={given!r} is invalid: {problem}")
    return InitSource(given, path, "file", None)


def run_dir_source(given: str, run_dir: Path, selector: str) -> InitSource:
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"init.from={given!r} is invalid: {str(run_dir)!r} is not a regbench run directory (no "
                        f"{CONFIG_FILE}); give a run directory, RUN_DIR/best, RUN_DIR/last or a weights file")
    path, missing = selected_checkpoint(run_dir, selector)
    if missing:
        raise UserError(f"init.from={given!r} is invalid: the run {missing}")
    problem = torch_file_problem(path)
    if problem:
        raise UserError(f"init.from={given!r} is invalid: {CHECKPOINT_DIR}/{path.name} {problem}")
    return InitSource(given, path, selector, run_dir)


def selected_checkpoint(run_dir: Path, selector: str) -> tuple[Path, str | None]:
    """RUN_DIR's checkpoint that `selector` (best or last) names, and what is wrong with it if it is missing
    ("has no best checkpoint (checkpoints/best.ckpt is missing)"), else None."""
    path = run_dir / CHECKPOINT_DIR / CHECKPOINT_SELECTORS[selector]
    missing = None if path.is_file() else f"has no {selector} checkpoint ({CHECKPOINT_DIR}/{path.name} is missing)"
    return path, missing


def torch_file_problem(path: Path) -> str | None:
    """Why `path` is not in torch.save's format (a zip archive, or a legacy pickle stream), or None."""
    if zipfile.is_zipfile(path):
        return None
    with path.open("rb") as handle:
        first = handle.read(1)
    if first and first[0] == PICKLE_PROTOCOL_MARK:
        return None
    return "is not a torch.save file (neither a zip archive nor a pickle stream)"


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a safetensors file (an 8-byte little-endian header length, then a JSON header), or None."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "is not a safetensors file (shorter than its 8-byte header length)"
        length = struct.unpack("<Q", head)[0]
        if length > size - 8:
            return "is not a safetensors file (its header length exceeds the file)"
        try:
            header = json.loads(handle.read(length))
        except ValueError:
            return "is not a safetensors file (its header is not JSON)"
    return None if isinstance(header, dict) else "is not a safetensors file (its header is not a JSON object)"


def check_init_config(cfg: Mapping[str, Any]) -> list[InitSource]:
    """Stage one (torch-free): the flags, the freeze list, every source's path and format, and a list of sources
    only for a network pair (regularizer=[coteaching], one source per network)."""
    init = cfg["init"]
    for flag in FLAGS:
        check(isinstance(init[flag], bool), f"init.{flag}", init[flag], "must be true or false")
    freeze = init["freeze"]
    check(isinstance(freeze, (list, tuple)) and all(isinstance(p, str) and p for p in freeze), "init.freeze",
          freeze, "must be a list of parameter-name prefixes, e.g. [features.0, features.1]")
    given = init["from"]
    if given is None:
        chosen = [f"init.{flag}=true" for flag in ("reset_head", "freeze_bn_stats") if init[flag]]
        chosen += [f"init.freeze={list(freeze)}"] if freeze else []
        if chosen:
            raise UserError(f"{chosen[0]} needs a checkpoint to start from; set init.from (a run directory or a "
                            f"weights file)")
        return []
    if isinstance(given, (list, tuple)):
        networks = 2 if PAIR_REGULARIZER in cfg["regularizer"] else 1
        check(len(given) == networks, "init.from", list(given),
              f"a list gives one source per network: {networks} here"
              + ("" if networks == 2 else f" (two only with regularizer=[{PAIR_REGULARIZER}], its network pair); "
                                          f"give one source without brackets"))
    return init_sources(init)
