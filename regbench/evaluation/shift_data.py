"""What the shift evaluations (corruptions, LAME) share: the test split's raw pixels, the refusal of datasets whose
test images are not held in memory, the evaluated network in eval mode, and its outputs on pixels in [0, 1]."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn

from regbench.errors import UserError, check
from regbench.specs.evaluation import SHIFT_DATASETS, UNBUILT_CORRUPTIONS


def check_shift_dataset(evaluation: str, data: Mapping[str, Any]) -> None:
    if data["name"] not in SHIFT_DATASETS:
        raise UserError(f"eval=[{evaluation}] corrupts or reorders test images held in memory, but "
                        f"data={data['name']} is not one of them; use one of {', '.join(SHIFT_DATASETS)}")


def check_built_corruptions(key: str, value: Any) -> None:
    """frost and spatter (a list of corruptions holding one, or the name itself) are refused with the reason."""
    for name in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(name, str) and name in UNBUILT_CORRUPTIONS:
            check(False, key, value, f"{name} is not built: {UNBUILT_CORRUPTIONS[name]}; leave it out")


def test_pixels(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split's uint8 images (N, C, H, W), before normalization, and their labels."""
    images, labels, _ = datamodule.splits["test"]
    return images, labels


@contextmanager
def evaluated_network(module) -> Iterator[nn.Module]:
    """The network evaluated (the final or the averaged weights), in eval mode for the block."""
    network = module.eval_network()
    was_training = network.training
    network.eval()
    try:
        yield network
    finally:
        network.train(was_training)


def normalized(pixels: torch.Tensor, datamodule) -> torch.Tensor:
    """Pixels in [0, 1] normalized as the datamodule normalizes its test images."""
    return (pixels - datamodule.mean.to(pixels.device)) / datamodule.std.to(pixels.device)


def predictions(module, network: nn.Module, pixels: torch.Tensor, datamodule) -> torch.Tensor:
    """The predicted class of every image given as pixels in [0, 1], batch by batch on the module's device."""
    parts = []
    with torch.no_grad():
        for batch in pixels.split(datamodule.batch_size):
            inputs = module.in_memory_format(normalized(batch.to(module.device), datamodule))
            parts.append(network(inputs).argmax(dim=1).cpu())
    return torch.cat(parts)
