"""Which config keys regbench reads: an override that adds a key nothing reads (a typo such as
+trainer.max_epoch=5 or +regularizer.dropout.rat=0.1) or removes one that is needed is refused in one line, where
Hydra would accept it silently or fail with its own advice.

The known keys come from where they are defined: the YAML of the selected options (the "base" config, composed
from the group selections alone) and the registries' declared parameters (a parameter that an option's YAML
leaves out may still be added). A mapping its YAML leaves empty (timm's model_kwargs: {}) takes any key.
"""
from __future__ import annotations

from typing import Any, Callable

from hydra.core.override_parser.types import Override

from regbench.errors import UserError
from regbench.loggers import LOGGERS
from regbench.registry import Registry, near_names
from regbench.specs.backbones import BACKBONES
from regbench.specs.calibration import CALIBRATORS
from regbench.specs.data import DATASETS
from regbench.specs.evaluation import EVALUATIONS
from regbench.specs.norms import NORMS
from regbench.specs.optim import OPTIMIZERS, SCHEDULES
from regbench.specs.regularizers import REGULARIZERS

# The config mappings that a registry entry is built from (the entry named by their `name` key).
COMPONENT_REGISTRIES: dict[str, Registry] = {
    registry.config_key: registry for registry in (DATASETS, BACKBONES, NORMS, OPTIMIZERS, SCHEDULES, LOGGERS)}
# The config mappings filled by a list-valued group (name -> the entry's parameters, one per selected name).
LISTED_REGISTRIES: dict[str, Registry] = {
    registry.config_key: registry for registry in (REGULARIZERS, CALIBRATORS, EVALUATIONS)}
# Hydra's own config, which Hydra checks itself.
HYDRA_KEY = "hydra"
_ABSENT = object()


def lookup(cfg: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path`, or _ABSENT; a list on the way counts as holding the rest (Hydra checks indices)."""
    node = cfg
    for key in path:
        if isinstance(node, list):
            return node
        if not isinstance(node, dict) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def reading_registry(base: dict[str, Any], parent: tuple[str, ...]) -> tuple[Registry, str] | None:
    """The registry and entry whose factory reads the mapping at `parent`, if one does."""
    if len(parent) == 1 and parent[0] in COMPONENT_REGISTRIES:
        return COMPONENT_REGISTRIES[parent[0]], base[parent[0]]["name"]
    if len(parent) == 2 and parent[0] in LISTED_REGISTRIES:
        return LISTED_REGISTRIES[parent[0]], parent[1]
    return None


def known_keys(base: dict[str, Any], parent: tuple[str, ...]) -> list[str]:
    mapping = lookup(base, parent)
    keys = set(mapping) if isinstance(mapping, dict) else set()
    reader = reading_registry(base, parent)
    if reader is not None:
        keys |= set(reader[0].parameters(reader[1]))
    return sorted(keys)


def check_added_key(base: dict[str, Any], path: tuple[str, ...], shown: str) -> None:
    """`path` is not in the base config: accept it only where a component reads it."""
    depth = next(i for i in range(len(path)) if lookup(base, path[:i + 1]) is _ABSENT)
    parent, key = path[:depth], path[depth]
    if len(parent) == 1 and parent[0] in LISTED_REGISTRIES:
        registry = LISTED_REGISTRIES[parent[0]]
        registry.entry(key)
        group, family = registry.config_key, registry.family
        selected = ",".join(base[group]) or ("none" if group == REGULARIZERS.config_key else "")
        raise UserError(f"{shown} sets a parameter of {family} {key}, which is not selected "
                        f"({group}=[{selected}]); select it first: {group}=[{key}] (a list), then "
                        f"set its parameters as {group}.{key}.NAME=VALUE")
    if lookup(base, parent) == {}:
        return
    reader = reading_registry(base, parent)
    if reader is not None and key in reader[0].parameters(reader[1]):
        return
    known = known_keys(base, parent)
    where = f"keys of {'.'.join(parent)}" if parent else "top-level keys"
    hint = "; regbench sets it" if reader is not None and key in reader[0].context else near_names(key, known)
    raise UserError(f"{shown} is not a key regbench reads ({where}: {', '.join(known) or 'none'}){hint}")


def check_deleted_key(base: dict[str, Any], path: tuple[str, ...], shown: str) -> None:
    """Every key the composed config holds is one regbench reads, and its default is the YAML's: a deleted key would
    leave a component to a default of its code, which may differ (defaults live in the YAML only)."""
    if lookup(base, path) is _ABSENT:
        return  # Hydra says that there is nothing to delete
    key = ".".join(path)
    raise UserError(f"{shown} removes {key}, which regbench reads; set a value instead ({key}=VALUE)")


def check_kind(old: Any, new: Any, key: str, shown: str) -> None:
    """A mapping or a list that the YAML defines stays one: components index into them."""
    if isinstance(old, dict) and old and not isinstance(new, dict):
        raise UserError(f"{shown} is invalid: {key} holds keys ({', '.join(sorted(old))}); set them one by one, "
                        f"e.g. {key}.{sorted(old)[0]}=VALUE")
    if isinstance(old, list) and not isinstance(new, list):
        raise UserError(f"{shown} is invalid: {key} is a list (e.g. {key}={old}); write one in brackets")


def is_key_override(override: Override, is_group: Callable[[str], bool]) -> bool:
    """An override of a config key (not a group selection, not Hydra's own config, not a package move)."""
    key = override.key_or_group
    return (override.package is None and key.split(".")[0] != HYDRA_KEY and not key.startswith(f"{HYDRA_KEY}/")
            and not (is_group(key) and not override.is_delete()))


def check_override_keys(overrides: list[Override], base: dict[str, Any]) -> None:
    """Each key an override sets must be one the base config has or a component reads, and keep the kind of a
    mapping or list there; a key it deletes must be one regbench can do without."""
    for override in overrides:
        path = tuple(override.key_or_group.split("."))
        old = lookup(base, path)
        if override.is_delete():
            check_deleted_key(base, path, override.input_line)
        elif old is _ABSENT:
            check_added_key(base, path, override.input_line.lstrip("+"))
        elif not override.is_sweep_override():
            check_kind(old, override.value(), override.key_or_group, override.input_line.lstrip("+"))
