"""How a source's weights fit a backbone: the network's tensors read from the file, their keys matched to the
backbone's state dict, shapes compared; the matching tensors loaded, parameters frozen, and the `init` section of
metrics.json. Weights are loaded into the bare backbone, before the regularizers wrap it, so every source speaks
its keys; a co-teaching pair's second network is then filled through the first one's names."""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn as nn

from regbench.errors import UserError
from regbench.init.source import InitSource, init_sources
from regbench.rundir_format import stored_config_hash

HEAD = "head"
# The prefix of a Lightning checkpoint's network keys (ClassifierModule.model).
NETWORK_PREFIX = "model."
# Head wrappers (dropout's Sequential(Dropout, head), multi-sample dropout's and BatchFormer's `.head`) put the
# classifier's keys under head.<i>. or head.head.
WRAPPED_HEAD = re.compile(rf"^{HEAD}\.(?:(?:\d+|{HEAD})\.)+")
# Containers that plain training scripts save a state dict under.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")
# nn.DataParallel's and DistributedDataParallel's key prefix.
PARALLEL_PREFIX = "module."
NOT_IN_MODEL = "not in this model"


@dataclass
class SourceFit:
    """What one source gives a backbone: `state` (backbone key -> tensor) to load; the source's keys left out
    (`skipped`, with why), the backbone's keys it does not give (`missing`, kept as initialized)."""

    source: InitSource
    state: dict[str, torch.Tensor]
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        run_dir = self.source.run_dir
        return {"from": self.source.given, "path": str(self.source.path), "checkpoint": self.source.checkpoint,
                "source_run_dir": str(run_dir) if run_dir else None,
                "source_config_hash": stored_config_hash(run_dir) if run_dir else None,
                "loaded": len(self.state), "skipped": dict(self.skipped), "missing": list(self.missing)}


def read_file(source: InitSource) -> Any:
    """The file's contents, tensors only (weights_only: a checkpoint cannot run code); a damaged file is one line."""
    try:
        if source.is_safetensors:
            from safetensors.torch import load_file

            return load_file(source.path, device="cpu")
        # Memory-mapped: only the tensors that load are read. torch.save's legacy format cannot be mapped.
        mmap = zipfile.is_zipfile(source.path)
        return torch.load(source.path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001  (damaged bytes can fail in any way; each means "unreadable")
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"init.from={source.given!r} is unreadable: {type(err).__name__}: {first}") from None


def network_state(raw: Any, given: str) -> dict[str, torch.Tensor]:
    """The network's tensors: a Lightning checkpoint's `model.` entries, a training script's nested state dict,
    or a plain state dict (DataParallel's `module.` prefix dropped); a co-teaching pair gives its evaluated
    network, the one with the better validation accuracy (`best`)."""
    if not isinstance(raw, Mapping):
        raise UserError(f"init.from={given!r} is invalid: it holds a {type(raw).__name__}, not a state dict")
    if "pytorch-lightning_version" in raw:
        raw = {k[len(NETWORK_PREFIX):]: v for k, v in raw["state_dict"].items() if k.startswith(NETWORK_PREFIX)}
    else:
        raw = next((raw[key] for key in STATE_DICT_KEYS if isinstance(raw.get(key), Mapping)), raw)
    state = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith(PARALLEL_PREFIX) for k in state):
        state = {k[len(PARALLEL_PREFIX):]: v for k, v in state.items()}
    if "best" in state and any(k.startswith("nets.0.") for k in state):
        chosen = f"nets.{int(state['best'])}."
        state = {k[len(chosen):]: v for k, v in state.items() if k.startswith(chosen)}
    if not state:
        raise UserError(f"init.from={given!r} is invalid: it holds no tensors")
    return state


def timm_classifier(model: nn.Module) -> str | None:
    """A timm backbone's classifier name in timm's own state dicts (`fc` for ResNets), which is regbench's head."""
    body = getattr(model, "body", None)
    classifier = getattr(body, "pretrained_cfg", {}).get("classifier") if body is not None else None
    return classifier if isinstance(classifier, str) else None


def backbone_key(key: str, target: Mapping[str, Any], classifier: str | None) -> str | None:
    """Where source key `key` goes in the backbone's state dict `target`, or None: the same key, the key without
    a head wrapper, or a plain timm/torchvision key (the body's key, its classifier regbench's head)."""
    candidates = [key, WRAPPED_HEAD.sub(f"{HEAD}.", key)]
    if classifier is not None:
        if key.startswith(f"{classifier}."):
            candidates.append(f"{HEAD}.{key[len(classifier) + 1:]}")
        candidates.append(f"body.{key}")
    return next((candidate for candidate in candidates if candidate in target), None)


def is_head(key: str) -> bool:
    return key.startswith(f"{HEAD}.")


def fit_source(source: InitSource, model: nn.Module, strict: bool, reset_head: bool) -> SourceFit:
    """Match the source's tensors to `model`'s state dict (meta tensors suffice: only shapes are compared). Strict:
    every key and shape must match (the head's aside with reset_head); else the matching ones load and the others
    are reported. A mismatch is one line naming the first mismatching key and both shapes."""
    target = model.state_dict()
    classifier = timm_classifier(model)
    fit = SourceFit(source, {})
    for key, tensor in network_state(read_file(source), source.given).items():
        placed = backbone_key(key, target, classifier)
        if placed is None:
            fit.skipped[key] = NOT_IN_MODEL
        elif reset_head and is_head(placed):
            fit.skipped[key] = "head reset (init.reset_head=true)"
        elif tuple(tensor.shape) != tuple(target[placed].shape):
            if strict:
                hint = ("set init.reset_head=true for a new classifier" if is_head(placed)
                        else "set init.strict=false to load only the matching keys")
                raise UserError(f"init.from={source.given!r} does not fit this model: {placed} has shape "
                                f"{tuple(tensor.shape)} in the source and {tuple(target[placed].shape)} here; {hint}")
            fit.skipped[key] = f"shape {tuple(tensor.shape)} in the source, {tuple(target[placed].shape)} here"
        else:
            fit.state[placed] = tensor
    fit.missing = [key for key in target if key not in fit.state and not (reset_head and is_head(key))]
    unplaced = [key for key, why in fit.skipped.items() if why == NOT_IN_MODEL]
    if strict and (fit.missing or unplaced):
        what = (f"this model's {fit.missing[0]} is not in the source" if fit.missing
                else f"the source's {unplaced[0]} is not in this model")
        raise UserError(f"init.from={source.given!r} does not fit this model: {what}; set init.strict=false to "
                        f"load only the matching keys")
    if not fit.state:
        raise UserError(f"init.from={source.given!r} does not fit this model: no key of the source matches one of "
                        f"this model's in name and shape")
    return fit


def frozen_names(model: nn.Module, prefixes: list[str]) -> list[str]:
    """The parameters that `init.freeze` names: each prefix a parameter's name or a module path above it."""
    names = [name for name, _ in model.named_parameters()]
    frozen: list[str] = []
    for prefix in prefixes:
        matched = [name for name in names if name == prefix or name.startswith(f"{prefix}.")]
        if not matched:
            modules = ", ".join(name for name, _ in model.named_children())
            raise UserError(f"init.freeze={list(prefixes)} is invalid: {prefix!r} names no parameter of this model "
                            f"(its modules: {modules}; a prefix is a module path such as features.0)")
        frozen += [name for name in matched if name not in frozen]
    return frozen


def check_init_fits(init: Mapping[str, Any], model: nn.Module) -> None:
    """Stage two: every source fits the backbone (built on the meta device) and every freeze prefix names
    parameters of it."""
    for source in init_sources(init):
        fit_source(source, model, init["strict"], init["reset_head"])
    frozen_names(model, list(init["freeze"]))


@dataclass
class Initialization:
    """The sources' fits (the second one for a co-teaching pair's peer) and the bare backbone's tensors named by
    their keys, taken before the regularizers wrap it (wrappers rename the keys, not the tensors)."""

    fits: list[SourceFit]
    backbone_keys: dict[int, str]

    def initialize_pair(self, regularizers: list) -> None:
        """Load the second source into the second network of co-teaching's pair. The peer is a copy of the first
        network, which still holds the backbone's own tensors: each of the peer's names is found through the
        tensor of that name in the first network."""
        from regbench.regularizers.noisy_labels import CoTeaching

        first, peer = next(reg.pair for reg in regularizers if isinstance(reg, CoTeaching)).nets
        state = self.fits[1].state
        matched = {name: state[self.backbone_keys[id(tensor)]]
                   for name, tensor in first.state_dict(keep_vars=True).items()
                   if self.backbone_keys.get(id(tensor)) in state}
        peer.load_state_dict(matched, strict=False)


def initialize_backbone(init: Mapping[str, Any], model: nn.Module, resumed: bool) -> Initialization:
    """Load the first source into the bare backbone `model` (unless the run `resumed` from its own checkpoint,
    which then holds the trained weights) and freeze the named parameters."""
    fits = [fit_source(source, model, init["strict"], init["reset_head"]) for source in init_sources(init)]
    if fits and not resumed:
        model.load_state_dict(fits[0].state, strict=False)
    frozen = set(frozen_names(model, list(init["freeze"])))
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return Initialization(fits, {id(tensor): key for key, tensor in model.state_dict(keep_vars=True).items()})


def init_report(init: Mapping[str, Any], fits: list[SourceFit], model: nn.Module, resumed: bool) -> dict[str, Any]:
    """metrics.json's `init` section (null without init.from)."""
    if not fits:
        return {}
    return {"sources": [fit.report() for fit in fits], "strict": init["strict"], "reset_head": init["reset_head"],
            "freeze": list(init["freeze"]),
            "frozen_parameters": sum(1 for p in model.parameters() if not p.requires_grad),
            "freeze_bn_stats": init["freeze_bn_stats"], "resumed_own_checkpoint": resumed}
