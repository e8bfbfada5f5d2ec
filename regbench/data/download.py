"""`data.download=true`: fetch through torchvision, turning a failed download into one line that says where the
files must go, instead of torchvision's multi-line traceback."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from regbench.errors import UserError


def fetch(what: str, where: Path, download: Callable[[], object]) -> None:
    """Run `download()`; any failure (no network, a bad checksum, a full disk) becomes a UserError."""
    try:
        download()
    except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, ... depending on the step
        reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
        if len(reason) > 300:
            reason = reason[:297] + "..."
        raise UserError(f"data.download=true could not fetch {what} into {where} ({reason}); download the files "
                        f"by hand into that folder, or run where the network is reachable") from None
