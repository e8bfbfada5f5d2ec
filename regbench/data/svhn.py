"""SVHN cropped digits (Netzer et al., 2011) from torchvision's layout: <root>/{train,test}_32x32.mat."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from regbench.data.base import ImageData, check_label_range
from regbench.data.cache import cached_arrays
from regbench.data.download import fetch
from regbench.data.facts import SVHN_FACTS
from regbench.data.files import SVHN_FILES, missing_svhn_files
from regbench.errors import UserError
from regbench.specs.data import DATASETS

SVHN_FILE_LABELS = (1, 10)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """X is (32, 32, 3, N) uint8; y is (N, 1) with label 10 standing for the digit 0."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise UserError(f"{path} is not a valid SVHN .mat file ({type(err).__name__}); delete it and re-fetch "
                        f"the data") from None
    if images.shape[1:] != (3, 32, 32) or len(images) != len(labels):
        raise UserError(f"{path} is not a valid SVHN .mat file: X has shape {images.shape}, y {len(labels)} labels")
    check_label_range(labels, *SVHN_FILE_LABELS, str(path))
    return images, labels % SVHN_FACTS.num_classes


def read_svhn(root: str, download: bool) -> dict[str, torch.Tensor]:
    from torchvision.datasets import SVHN

    base = Path(root).expanduser()
    for split, name in SVHN_FILES.items():
        if download and not (base / name).is_file():
            fetch(name, base, lambda split=split: SVHN(root=str(base), split=split, download=True))
    problem = missing_svhn_files(root)
    if problem:
        raise UserError(problem)
    out = {}
    for split, name in SVHN_FILES.items():
        images, labels = read_svhn_mat(base / name)
        out[f"{split}_x"], out[f"{split}_y"] = torch.from_numpy(images), torch.from_numpy(labels)
    return out


@DATASETS.register("svhn")
def load_svhn(*, root: str, download: bool, split_seed: int, cache: bool) -> ImageData:
    t = cached_arrays(root, "svhn", lambda: read_svhn(root, download), cache, SVHN_FACTS)
    # A mirrored digit is a different glyph, so no horizontal flip.
    return ImageData(t["train_x"], t["train_y"], t["test_x"], t["test_y"], classes=[str(d) for d in range(10)],
                     mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), hflip_ok=False)
