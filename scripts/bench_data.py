"""Images per second of regbench's two data paths against a plain torchvision ImageFolder + DataLoader pipeline,
all reading the same generated JPEG folder in the same run of this script.

- torchvision: ImageFolder (PIL decoding) with RandomResizedCrop, RandomHorizontalFlip, ToTensor and Normalize,
  a DataLoader with the same batch size and number of workers (persistent);
- stream: regbench's streaming path (data.storage=stream): workers decode with torchvision.io and crop, the
  training process normalizes;
- memory: regbench's in-memory path (data.storage=memory): the decoded images cut into batches and augmented
  (random-resized crop, flip) as whole batches; its one-off decode is reported apart.

Each path reads one full training epoch after a warm-up epoch (workers started, files in the page cache); the
paths alternate over `--trials` trials and medians are reported, so load from other processes hits all alike.

    python scripts/bench_data.py                       # 1200 JPEGs of 10 classes, 160x120 to 320x240, 2 workers
    python scripts/bench_data.py --workers 4 --images 4000
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from regbench.data.folder_datasets import load_image_folder
from regbench.data.module import ImageDataModule
from regbench.data.stream import StreamingDataModule


def write_jpeg_folder(root: Path, images: int, classes: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        width, height = int(rng.integers(160, 321)), int(rng.integers(120, 241))
        # Smooth gradients plus noise: compresses like a photograph, not like flat colour.
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        path = root / f"class{i % classes:02d}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def epoch_rate(loader) -> float:
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += batch[0].shape[0]
    return seen / (time.perf_counter() - start)


def torchvision_loader(root: Path, size: int, batch: int, workers: int):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    transform = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    return torch.utils.data.DataLoader(ImageFolder(str(root), transform), batch_size=batch, shuffle=True,
                                       drop_last=True, num_workers=workers, persistent_workers=workers > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=112, help="data.image_size")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the training process's share; the workers decode
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_jpeg_folder(root, args.images, args.classes)
        data = load_image_folder(download=False, root=str(root), split_seed=0, image_size=args.size,
                                 test_fraction=0.0, cache=False, mean=[0.5] * 3, std=[0.25] * 3)
        settings = dict(batch_size=args.batch, val_fraction=0.0, split_seed=0, seed=0, crop_padding=0, hflip=True,
                        resized_crop=True)
        stream = StreamingDataModule(data, num_workers=args.workers, **settings)
        stream.setup()
        started = time.perf_counter()
        memory = ImageDataModule(data.decode(), **settings)
        decode_s = time.perf_counter() - started
        memory.setup()
        loaders = {"torchvision": torchvision_loader(root, args.size, args.batch, args.workers),
                   "stream": stream.train_dataloader(), "memory": memory.train_dataloader()}
        for loader in loaders.values():
            epoch_rate(loader)  # warm-up
        rates = {name: [] for name in loaders}
        for _ in range(args.trials):
            for name, loader in loaders.items():
                rates[name].append(epoch_rate(loader))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{args.images} JPEGs (160x120..320x240) -> {args.size}x{args.size}, batch {args.batch}, "
          f"{args.workers} workers, median of {args.trials} alternating trials")
    for name, values in rates.items():
        print(f"  {name:12s} {median[name]:8.0f} images/s  ({', '.join(f'{v:.0f}' for v in values)})")
    print(f"  stream / torchvision = {median['stream'] / median['torchvision']:.2f} (target >= 1.0)")
    print(f"  memory / stream      = {median['memory'] / median['stream']:.1f}")
    print(f"  memory's one-off decode: {decode_s:.1f} s ({args.images / decode_s:.0f} images/s)")


if __name__ == "__main__":
    main()
