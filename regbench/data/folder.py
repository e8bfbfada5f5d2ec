"""Listing image folders (no decoding): which files, which class, which split, for the three folder layouts.

- image_folder: DIR/<class>/*.jpg|png|... (a test split of data.test_fraction per class is drawn, seeded), or
  DIR/train/<class>/... with DIR/test/<class>/... (DIR/val/<class>/... is then the validation split) or with
  DIR/val/<class>/... alone (then the test split, the ImageNet convention).
- tiny_imagenet: tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG,
  val/val_annotations.txt}; val is the test split (the test split has no labels).
- imagenet: ILSVRC-2012 as torchvision's ImageNet reads it: DIR/train/<wnid>/*.JPEG, DIR/val/<wnid>/*.JPEG (the
  validation images sorted into class folders); val is the test split.
No torch: the config checks list a folder (its classes, split sizes and image channels) before torch loads.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from regbench.data.class_counts import stratified_indices
from regbench.errors import UserError

SPLIT_FOLDERS = ("train", "val", "test")
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
# The decoded-tensor cache's folder under data.root (see cache.py): never a class folder.
CACHE_DIR = "regbench_cache"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# PIL modes of one channel; every other mode decodes to RGB.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass(frozen=True)
class Split:
    paths: np.ndarray  # str, one per image
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FolderListing:
    classes: tuple[str, ...]
    train: Split
    val: Split | None  # a given validation split; None: data.val_fraction of train is held out
    test: Split

    def class_counts(self, split: Split) -> tuple[int, ...]:
        return tuple(np.bincount(split.labels, minlength=len(self.classes)).tolist())

    def digest(self) -> str:
        """Changes when any file is added, removed, replaced or relabelled: names the decoded-tensor cache."""
        h = hashlib.sha1()
        for split in (self.train, self.val, self.test):
            if split is None:
                continue
            for path, label in zip(split.paths, split.labels):
                stat = os.stat(path)
                h.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_mode(path: str) -> str:
    """The PIL mode from the file's header alone (nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise UserError(f"{path} is not a readable image ({type(err).__name__}); delete or replace it") from None


def mode_channels(mode: str) -> int:
    return 1 if mode in GRAY_MODES else 3


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith(".") and e.name != CACHE_DIR)


def _images_in(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.path for e in entries if e.is_file() and is_image_file(e.name))


def _need_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise UserError(f"{folder} not found: {what}")


def class_split(folder: Path, classes: list[str], inner: str = "") -> Split:
    """Images of `folder`/<class>/`inner`/ for each class in `classes` (label = position); an empty class folder
    is refused."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = _images_in(folder / name / inner) if (folder / name / inner).is_dir() else []
        if not files:
            raise UserError(f"class folder {folder / name / inner} holds no images (extensions: "
                            f"{' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        paths += files
        labels += [label] * len(files)
    return Split(np.array(paths), np.array(labels, dtype=np.int64))


def check_same_classes(train_dir: Path, other_dir: Path) -> None:
    ours, theirs = set(_subfolders(train_dir)), set(_subfolders(other_dir))
    if ours != theirs:
        missing, extra = sorted(ours - theirs), sorted(theirs - ours)
        what = (f"lacks class folder(s) {', '.join(missing[:5])}" if missing
                else f"has class folder(s) {', '.join(extra[:5])} that {train_dir} lacks")
        raise UserError(f"{other_dir} {what}; every split needs the same class folders as {train_dir}")


def _select(split: Split, idx: np.ndarray) -> Split:
    return Split(split.paths[idx], split.labels[idx])


@lru_cache(maxsize=8)
def list_image_folder(root: str, test_fraction: float, split_seed: int) -> FolderListing:
    base = Path(root).expanduser()
    _need_folder(base, "set data.root to a folder of class folders (DIR/<class>/*.jpg) or of DIR/train and "
                       "DIR/val or DIR/test")
    present = [name for name in SPLIT_FOLDERS if (base / name).is_dir()]
    if not present:
        classes = _subfolders(base)
        if not classes:
            raise UserError(f"{base} holds no class folders; expected DIR/<class>/*.jpg (or DIR/train/<class>/...)")
        everything = class_split(base, classes)
        kept, held = stratified_indices(everything.labels, test_fraction, split_seed)
        return FolderListing(tuple(classes), _select(everything, kept), None, _select(everything, held))
    if "train" not in present:
        raise UserError(f"{base} has {'/'.join(present)} but no train folder; expected DIR/train/<class>/... "
                        f"beside DIR/val or DIR/test")
    if present == ["train"]:
        raise UserError(f"{base}/train has no DIR/val or DIR/test beside it to test on; add one, or put the class "
                        f"folders directly in {base} to draw a test split")
    train_dir = base / "train"
    classes = _subfolders(train_dir)
    if not classes:
        raise UserError(f"{train_dir} holds no class folders; expected {train_dir}/<class>/*.jpg")
    for name in present[1:]:
        check_same_classes(train_dir, base / name)
    val = class_split(base / "val", classes) if "val" in present else None
    if "test" in present:
        return FolderListing(tuple(classes), class_split(train_dir, classes), val, class_split(base / "test", classes))
    return FolderListing(tuple(classes), class_split(train_dir, classes), None, val)


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is unreadable ({type(err).__name__}); re-extract the dataset") from None


def class_names(wnids: list[str], words_file: Path) -> tuple[str, ...]:
    """'wnid name' with the first name words.txt gives the WordNet id; the bare wnid without one."""
    words = {}
    if words_file.is_file():
        for line in _read_lines(words_file):
            wnid, _, names = line.partition("\t")
            words[wnid] = names.split(",")[0].strip()
    return tuple(f"{wnid} {words[wnid]}" if words.get(wnid) else wnid for wnid in wnids)


@lru_cache(maxsize=4)
def list_tiny_imagenet(root: str) -> FolderListing:
    base = Path(root).expanduser() / TINY_IMAGENET_FOLDER
    layout = "tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt}"
    _need_folder(base, f"extract tiny-imagenet-200.zip into data.root={root!r}: expected {layout}")
    for needed in ("wnids.txt", "train", "val/images", "val/val_annotations.txt"):
        if not (base / needed).exists():
            raise UserError(f"{base / needed} not found: expected {layout}")
    wnids = _read_lines(base / "wnids.txt")
    train = class_split(base / "train", wnids, inner="images")
    position = {wnid: i for i, wnid in enumerate(wnids)}
    paths, labels = [], []
    for line in _read_lines(base / "val" / "val_annotations.txt"):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in position:
            raise UserError(f"{base / 'val' / 'val_annotations.txt'} line {line!r} names no class of wnids.txt")
        path = base / "val" / "images" / fields[0]
        if not path.is_file():
            raise UserError(f"{path} not found, though val_annotations.txt lists it; re-extract the dataset")
        paths.append(str(path))
        labels.append(position[fields[1]])
    missing = sorted(set(wnids) - {wnids[label] for label in labels})
    if missing:
        raise UserError(f"{base / 'val'} has no images of class(es) {', '.join(missing[:5])}; re-extract the dataset")
    order = np.argsort(paths)
    test = Split(np.array(paths)[order], np.array(labels, dtype=np.int64)[order])
    return FolderListing(class_names(wnids, base / "words.txt"), train, None, test)


@lru_cache(maxsize=4)
def list_imagenet(root: str) -> FolderListing:
    base = Path(root).expanduser()
    layout = ("ILSVRC-2012 extracted as DIR/train/<wnid>/*.JPEG and DIR/val/<wnid>/*.JPEG (val sorted into class "
              "folders)")
    for needed in ("train", "val"):
        _need_folder(base / needed, f"expected {layout} in data.root={root!r}")
    wnids = _subfolders(base / "train")
    if not wnids:
        raise UserError(f"{base / 'train'} holds no class folders; expected {layout}")
    if not _subfolders(base / "val"):
        raise UserError(f"{base / 'val'} holds no class folders: sort the validation images into val/<wnid>/ "
                        f"(e.g. with the ILSVRC-2012 devkit's ground truth, as torchvision's ImageNet does)")
    check_same_classes(base / "train", base / "val")
    words = base / "LOC_synset_mapping.txt"
    names = class_names(wnids, base / "words.txt")
    if words.is_file():  # Kaggle's copy: "wnid name, other names" per line
        mapping = {line.split(" ", 1)[0]: line.split(" ", 1)[1].split(",")[0] for line in _read_lines(words)
                   if " " in line}
        names = tuple(f"{w} {mapping[w]}" if w in mapping else w for w in wnids)
    return FolderListing(names, class_split(base / "train", wnids), None, class_split(base / "val", wnids))


def images_channels(listing: FolderListing, channels: int | None, every_file: bool) -> int:
    """`channels` when set; else the channels of the images' common mode (headers only: the first training
    image's, or with `every_file` all of them, refusing mixed modes)."""
    if channels is not None:
        return channels
    first = str(listing.train.paths[0])
    mode = image_mode(first)
    if every_file:
        for split in (listing.train, listing.val, listing.test):
            for path in (split.paths if split is not None else ()):
                other = image_mode(str(path))
                if mode_channels(other) != mode_channels(mode):
                    raise UserError(f"the images have mixed modes: {first} is {mode} but {path} is {other}; set "
                                    f"data.channels=1 or data.channels=3 to convert them all")
    return mode_channels(mode)
