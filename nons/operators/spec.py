"""What an operator is: :class:`OperatorSpec`, built from an async function, and the built-in marker.

The built-in operator modules (:mod:`~nons.operators.llm`, :mod:`~nons.operators.deterministic`) mark their
functions with :func:`builtin`; the registry imports them and registers what they marked. Nothing here imports the
registry, so imports point one way: spec, then the built-ins, then the registry.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nons.base.errors import ConfigurationError

__all__ = ["OperatorFunc", "OperatorSpec", "builtin", "builtin_specs", "spec_for"]

OperatorFunc = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=OperatorFunc)


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """A registered operator: its function, description and the parameters a node may set."""

    name: str
    func: OperatorFunc
    description: str
    uses_llm: bool
    parameters: Mapping[str, inspect.Parameter]
    #: One of NoN's own operators (:func:`builtin`): it starts no pass of its own (an agent's run, a network's
    #: pass), which an application's operator may.
    builtin: bool = False

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.parameters.items() if p.default is inspect.Parameter.empty)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise ``ConfigurationError`` naming any unknown or missing parameter."""
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            known = ", ".join(self.parameters) or "none"
            raise ConfigurationError(
                f"operator {self.name!r} has no parameter(s) {', '.join(unknown)}; its parameters: {known}"
            )
        missing = [n for n in self.required if n not in params]
        if missing:
            raise ConfigurationError(
                f"operator {self.name!r} needs parameter(s) {', '.join(missing)}; "
                f"give them to the node, e.g. Node({self.name!r}, {missing[0]}=...)"
            )


def spec_for(func: OperatorFunc, name: str, description: str | None, uses_llm: bool) -> OperatorSpec:
    """The spec of ``func``, or ``ConfigurationError`` when it is not an async ``(ctx, input, **params)``."""
    if not inspect.iscoroutinefunction(func):
        raise ConfigurationError(f"operator {name!r} must be an async function")
    signature = inspect.signature(func)
    positional = list(signature.parameters.values())[:2]
    if len(positional) < 2 or any(
        p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in positional
    ):
        raise ConfigurationError(f"operator {name!r} must take (ctx, input, **params) as its first two arguments")
    parameters = {
        p.name: p
        for p in list(signature.parameters.values())[2:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    doc = description or inspect.getdoc(func) or ""
    return OperatorSpec(name, func, doc.splitlines()[0] if doc else "", uses_llm, parameters)


_BUILTINS: list[OperatorSpec] = []


def builtin(*, description: str, uses_llm: bool = True) -> Callable[[F], F]:
    """Mark the decorated function as a built-in operator, named after the function."""

    def mark(func: F) -> F:
        _BUILTINS.append(dataclasses.replace(spec_for(func, func.__name__, description, uses_llm), builtin=True))
        return func

    return mark


def builtin_specs() -> tuple[OperatorSpec, ...]:
    """The built-in operators marked so far (all of them once the built-in modules are imported)."""
    return tuple(_BUILTINS)
