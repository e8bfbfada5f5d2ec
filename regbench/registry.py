"""A small name -> factory registry per component family (the timm pattern)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from regbench.errors import ParamError, UserError


class Registry:
    def __init__(self, family: str, config_key: str):
        self.family = family
        self.config_key = config_key
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
                            f"allowed: {', '.join(self.names())}")
        return self._entries[name]

    def with_defaults(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` plus the defaults of entry `name`'s parameters that it leaves out."""
        defaults = {key: p.default for key, p in inspect.signature(self.get(name)).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        return {**defaults, **params}

    def create(self, name: str, params: Mapping[str, Any], path: str | None = None, **context) -> Any:
        """Build entry `name` from its config `params` plus the run `context` it takes (an entry names the
        context it needs, e.g. `label_noise`, among its parameters); errors name `path.param`."""
        factory = self.get(name)
        path = path or self.config_key
        accepted = inspect.signature(factory).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        context = {k: v for k, v in context.items() if k in accepted or takes_any}
        unknown = [k for k in params if k in context or (k not in accepted and not takes_any)]
        if unknown:
            allowed = [k for k, p in accepted.items() if k not in context and p.kind is p.KEYWORD_ONLY
                       or (k not in context and p.kind is p.POSITIONAL_OR_KEYWORD)]
            raise UserError(f"{path}.{unknown[0]} is not a parameter of {self.family} {name!r}; "
                            f"allowed: {', '.join(allowed) or 'none'}")
        try:
            return factory(**context, **params)
        except ParamError as err:
            # A plain UserError from here on, so enclosing builders do not prefix the path again.
            raise UserError(str(err.at(path))) from None
