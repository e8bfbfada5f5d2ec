"""A small name -> factory registry per component family (the timm pattern), whose entries are declared without
importing them: each names the module that registers its factory and the config parameters it reads. The config
checks read the declarations (torch-free); building an entry imports its module, whose registration must match."""
from __future__ import annotations

import copy
import difflib
import functools
import importlib
import inspect
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Callable, Iterable, Mapping

from regbench.errors import ParamError, UserError

# How a factory reads a config parameter: it must be given, or the factory has a default. regbench's own entries
# are all REQUIRED: their defaults live in the YAML of their config option (see Registry.defaults), not in code.
REQUIRED, OPTIONAL = "required", "optional"


def near_names(name: str, known: Iterable[str]) -> str:
    """'; did you mean X?' for a likely typo of one of `known`, else ''."""
    matches = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {matches[0]}?" if matches else ""


@dataclass(frozen=True)
class Entry:
    """A declared entry: `module` registers its factory when imported; `params` are the factory's config
    parameters in signature order, each REQUIRED or OPTIONAL (regbench's own: REQUIRED, their defaults are their
    option's YAML, see Registry.defaults); `values` the rules (regbench.specs.values) of those
    whose allowed values need no knowledge of the run (a value that depends on the run is checked when it is
    built)."""

    module: str
    params: Mapping[str, str]
    values: Mapping[str, Callable[[str, Any], None]] = field(default_factory=dict)


def config_parameters(factory: Callable, context: tuple[str, ...]) -> dict[str, str]:
    """A factory's config parameters as an Entry declares them (the context arguments left out)."""
    accepted = inspect.signature(factory).parameters.values()
    return {p.name: OPTIONAL if p.default is not p.empty else REQUIRED for p in accepted
            if p.name not in context and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


class Registry:
    """`context` names the arguments regbench passes to the entries itself (the run's seed, the model, ...; each
    entry takes those it names among its parameters): they are not config parameters, so a config key with one
    of these names is refused. `shared` names config parameters every entry's mapping holds that regbench reads
    around the factory (optim.project), not passed to it."""

    def __init__(self, family: str, config_key: str, entries: Mapping[str, Entry], context: tuple[str, ...] = (),
                 shared: tuple[str, ...] = ()):
        self.family = family
        self.config_key = config_key
        self.context = context
        self.shared = shared
        self.entries = dict(entries)
        self._factories: dict[str, Callable] = {}
        for name, entry in self.entries.items():
            ruled = set(entry.values) - set(entry.params) - set(shared)
            if ruled:
                raise ValueError(f"{family} {name!r} declares value rules for {sorted(ruled)}, which are not among "
                                 f"its parameters")

    def register(self, name: str) -> Callable:
        """Fulfil declared entry `name`: the factory must live in the declared module and read the declared
        parameters (a programming error otherwise, so a declaration cannot drift from its factory)."""
        def add(factory: Callable) -> Callable:
            entry = self.entries.get(name)
            if entry is None:
                raise ValueError(f"{self.family} {name!r} is not declared; declare it beside the others "
                                 f"({', '.join(self.names())})")
            if name in self._factories:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            if factory.__module__ != entry.module:
                raise ValueError(f"{self.family} {name!r} is declared in {entry.module} but registered in "
                                 f"{factory.__module__}")
            found = config_parameters(factory, self.context)
            if found != dict(entry.params):
                raise ValueError(f"{self.family} {name!r} is declared with parameters {dict(entry.params)} but its "
                                 f"factory reads {found}")
            self._factories[name] = factory
            return factory
        return add

    def names(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, name: str) -> Entry:
        """The declaration of entry `name` (no import); an unknown name is a UserError listing the known ones."""
        if name not in self.entries:
            raise UserError(f"{self.config_key}={name!r} is not a known {self.family}; "
                            f"allowed: {', '.join(self.names())}{near_names(str(name), self.names())}")
        return self.entries[name]

    def get(self, name: str) -> Callable:
        """The factory of entry `name`, importing the module that registers it on first use."""
        entry = self.entry(name)
        if name not in self._factories:
            importlib.import_module(entry.module)
            if name not in self._factories:
                raise ValueError(f"{self.family} {name!r}: importing {entry.module} registered no factory")
        return self._factories[name]

    def parameters(self, name: str) -> list[str]:
        """The config parameters of entry `name`, in signature order: what its config mapping may hold."""
        return [*self.entry(name).params, *self.shared]

    def defaults(self, name: str) -> dict[str, Any]:
        """The defaults of entry `name`'s parameters, from its config option's YAML in the config package
        (conf/<config_key>/<name>.yaml; a list group's file holds them under the name), the one place they live:
        what a run composes, and what a Python caller that leaves a parameter out gets. A value that interpolates
        the run's config (`${data.augment.hflip}`, also inside a mapping) has no default outside a run."""
        return copy.deepcopy(dict(_option_defaults(self.config_key, name, tuple(self.entry(name).params))))

    def with_defaults(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` plus the defaults of entry `name`'s parameters that it leaves out (a run's config leaves none
        out: its YAML is then not read again)."""
        if all(key in params for key in self.entry(name).params):
            return dict(params)
        return {**self.defaults(name), **params}

    def check_parameters(self, name: str, params: Iterable[str], path: str | None = None) -> None:
        """Refuse, naming `path.key`, a key that is not a config parameter of entry `name`."""
        allowed = self.parameters(name)
        unknown = [key for key in params if key not in allowed]
        if unknown:
            hint = "; regbench sets it" if unknown[0] in self.context else near_names(unknown[0], allowed)
            raise UserError(f"{path or self.config_key}.{unknown[0]} is not a parameter of {self.family} {name!r}; "
                            f"allowed: {', '.join(allowed) or 'none'}{hint}")

    def check_values(self, name: str, params: Mapping[str, Any], path: str | None = None) -> None:
        """Refuse, naming `path.key`, a value that breaks its declared rule (keys without one pass)."""
        rules = self.entry(name).values
        try:
            for key, value in params.items():
                if key in rules:
                    rules[key](key, value)
        except ParamError as err:
            raise UserError(str(err.at(path or self.config_key))) from None

    def create(self, name: str, params: Mapping[str, Any], path: str | None = None, **context) -> Any:
        """Build entry `name` from its config `params` plus the run `context` it takes (an entry names the
        context it needs, e.g. `label_noise`, among its parameters); errors name `path.param`."""
        if not set(context) <= set(self.context):
            raise ValueError(f"{self.family} registry: {sorted(set(context) - set(self.context))} passed but "
                             f"not declared as context")
        path = path or self.config_key
        self.check_parameters(name, params, path)
        self.check_values(name, params, path)
        params = {key: value for key, value in self.with_defaults(name, params).items() if key not in self.shared}
        accepted = inspect.signature(self.get(name)).parameters
        context = {k: v for k, v in context.items() if k in accepted}
        try:
            return self.get(name)(**context, **params)
        except ParamError as err:
            # A plain UserError from here on, so enclosing builders do not prefix the path again.
            raise UserError(str(err.at(path))) from None


@functools.cache  # the config package does not change within a process
def _option_defaults(group: str, name: str, params: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    import yaml  # omegaconf's own YAML reader; only callers that leave parameters out load it

    text = files("regbench.conf").joinpath(group, f"{name}.yaml").read_text()
    raw = yaml.safe_load(text) or {}
    section = raw[name] if isinstance(raw.get(name), dict) else raw
    return tuple((key, section[key]) for key in params if key in section and "${" not in str(section[key]))
