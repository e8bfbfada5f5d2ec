"""A small name -> factory registry per component family (the timm pattern)."""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable, Mapping

from regbench.errors import ParamError, UserError


def near_names(name: str, known: Iterable[str]) -> str:
    """'; did you mean X?' for a likely typo of one of `known`, else ''."""
    matches = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {matches[0]}?" if matches else ""


class Registry:
    """`context` names the arguments regbench passes to the entries itself (the run's seed, the model, ...; each
    entry takes those it names among its parameters): they are not config parameters, so a config key with one
    of these names is refused."""

    def __init__(self, family: str, config_key: str, context: tuple[str, ...] = ()):
        self.family = family
        self.config_key = config_key
        self.context = context
        self._entries: dict[str, Callable] = {}

    def register(self, name: str) -> Callable:
        def add(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._entries[name] = factory
            return factory
        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise UserError(f"{self.config_key}={name!r} is not a known {self.family}; "
                            f"allowed: {', '.join(self.names())}{near_names(str(name), self.names())}")
        return self._entries[name]

    def parameters(self, name: str) -> list[str]:
        """The config parameters of entry `name`, in signature order: what its config mapping may hold."""
        accepted = inspect.signature(self.get(name)).parameters.values()
        return [p.name for p in accepted if p.name not in self.context
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def has_default(self, name: str, key: str) -> bool:
        """Whether config parameter `key` of entry `name` may be left out (its factory has a default)."""
        parameter = inspect.signature(self.get(name)).parameters.get(key)
        return parameter is not None and parameter.default is not parameter.empty

    def with_defaults(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` plus the defaults of entry `name`'s parameters that it leaves out."""
        defaults = {key: p.default for key, p in inspect.signature(self.get(name)).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        return {**defaults, **params}

    def check_parameters(self, name: str, params: Iterable[str], path: str | None = None) -> None:
        """Refuse, naming `path.key`, a key that is not a config parameter of entry `name`."""
        allowed = self.parameters(name)
        unknown = [key for key in params if key not in allowed]
        if unknown:
            hint = "; regbench sets it" if unknown[0] in self.context else near_names(unknown[0], allowed)
            raise UserError(f"{path or self.config_key}.{unknown[0]} is not a parameter of {self.family} {name!r}; "
                            f"allowed: {', '.join(allowed) or 'none'}{hint}")

    def create(self, name: str, params: Mapping[str, Any], path: str | None = None, **context) -> Any:
        """Build entry `name` from its config `params` plus the run `context` it takes (an entry names the
        context it needs, e.g. `label_noise`, among its parameters); errors name `path.param`."""
        if not set(context) <= set(self.context):
            raise ValueError(f"{self.family} registry: {sorted(set(context) - set(self.context))} passed but "
                             f"not declared as context")
        path = path or self.config_key
        self.check_parameters(name, params, path)
        accepted = inspect.signature(self.get(name)).parameters
        context = {k: v for k, v in context.items() if k in accepted}
        try:
            return self.get(name)(**context, **params)
        except ParamError as err:
            # A plain UserError from here on, so enclosing builders do not prefix the path again.
            raise UserError(str(err.at(path))) from None
