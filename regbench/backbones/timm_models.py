"""Any timm model that accepts `norm_layer`, built from scratch (pretrained=False) around regbench's norms."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from regbench.backbones.base import Classifier
from regbench.specs.backbones import BACKBONES
from regbench.errors import UserError, check
from regbench.norms import NormLayer, swap_convs
from regbench.timm_import import import_timm

timm = import_timm()


class TimmClassifier(Classifier):
    def __init__(self, body: nn.Module, num_classes: int):
        super().__init__()
        self.body = body  # built with num_classes=0: returns pooled features
        self.num_features = body.num_features
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def probe(model: nn.Module, image_shape: tuple[int, int, int], where: str) -> None:
    """One eval forward pass, so a norm the model cannot use fails here as one line, not mid-training."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *image_shape))
    except (RuntimeError, ValueError, AssertionError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{where} cannot run on {tuple(image_shape)} images: {first_line}") from None
    model.train()


@BACKBONES.register("timm")
def timm_model(*, image_shape, num_classes, norm_layer: NormLayer, conv_layer, model_name: str,
               model_kwargs: Mapping[str, Any] | None) -> TimmClassifier:
    check(isinstance(model_name, str) and model_name in timm.list_models(), "model_name", model_name,
          "must be a timm model name (see timm.list_models())")
    where = f"backbone=timm model_name={model_name} with norm={norm_layer.name}"
    try:
        body = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=image_shape[0],
                                 norm_layer=lambda num_channels, **_: norm_layer(num_channels),
                                 **dict(model_kwargs or {}))
    except (TypeError, ValueError, AssertionError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{where}: timm.create_model refused it: {first_line}") from None
    swap_convs(body, conv_layer)
    model = TimmClassifier(body, num_classes)
    probe(model, image_shape, where)
    return model
