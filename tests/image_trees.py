"""Tiny image trees in the folder datasets' real layouts: JPEG and PNG files of a few classes, each class with
its own mean colour so that a network can learn them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "emu")
WNIDS = ("n01443537", "n01629819", "n01641577")


def write_image(path: Path, label: int, seed: int, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> Path:
    """A `size` (width, height) image whose colour says its class, with per-pixel noise."""
    rng = np.random.default_rng(seed)
    base = np.zeros(3)
    base[label % 3] = 200
    pixels = np.clip(base + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_class_folders(root: Path, per_class: int, classes=CLASSES, seed: int = 0, mode: str = "RGB") -> None:
    """root/<class>/NNN.jpg and .png alternately."""
    for label, name in enumerate(classes):
        for i in range(per_class):
            suffix = "jpg" if i % 2 == 0 else "png"
            write_image(root / name / f"{i:03d}.{suffix}", label, seed * 10_000 + label * 1000 + i, mode=mode)


def write_tiny_imagenet(root: Path, per_class: int = 6, val_per_class: int = 2) -> Path:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    (base / "words.txt").write_text("".join(f"{w}\t{name}, other name\n" for w, name in zip(WNIDS, CLASSES)))
    for label, wnid in enumerate(WNIDS):
        for i in range(per_class):
            write_image(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", label, label * 100 + i, (64, 64))
    lines = []
    for i in range(val_per_class * len(WNIDS)):
        label = i % len(WNIDS)
        write_image(base / "val" / "images" / f"val_{i}.JPEG", label, 5000 + i, (64, 64))
        lines.append(f"val_{i}.JPEG\t{WNIDS[label]}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images").mkdir(parents=True)
    write_image(base / "test" / "images" / "test_0.JPEG", 0, 9999, (64, 64))
    return base


def write_imagenet(root: Path, per_class: int = 6, val_per_class: int = 2) -> Path:
    for label, wnid in enumerate(WNIDS):
        for i in range(per_class):
            write_image(root / "train" / wnid / f"{wnid}_{i}.JPEG", label, label * 100 + i, (40 + 4 * i, 32))
        for i in range(val_per_class):
            write_image(root / "val" / wnid / f"ILSVRC2012_val_{label}{i}.JPEG", label, 7000 + label * 10 + i,
                        (36, 44))
    return root
