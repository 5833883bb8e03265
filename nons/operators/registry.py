"""The operator registry and the ``@operator`` decorator.

An operator is an async function ``(ctx, input, **params)``: ``input`` is what the previous layer passed,
``params`` come from the node's configuration, and ``ctx`` (an :class:`~nons.operators.context.OperatorContext`)
gives LLM operators the node's model, context and call path.

    @operator(description="Say hello in the node's language.")
    async def greet(ctx: OperatorContext, input: str, language: str = "English") -> str:
        return (await ctx.complete(f"Greet {input} in {language}.")).text
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nons.base.errors import ConfigurationError

__all__ = ["OperatorSpec", "get_operator", "list_operators", "operator", "register_operator"]

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


_REGISTRY: dict[str, OperatorSpec] = {}


def _spec_for(func: OperatorFunc, name: str, description: str | None, uses_llm: bool) -> OperatorSpec:
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


def register_operator(
    func: OperatorFunc, *, name: str | None = None, description: str | None = None, uses_llm: bool = True,
    replace: bool = False,
) -> OperatorSpec:
    """Register ``func`` as an operator and return its spec."""
    # Built-ins first, so that a user operator named like one is refused now rather than breaking their load.
    _load_builtins()
    op_name = name or func.__name__
    if not op_name.isidentifier():
        raise ConfigurationError(f"operator name {op_name!r} must be an identifier")
    if op_name in _REGISTRY and not replace:
        raise ConfigurationError(f"operator {op_name!r} is already registered; pass replace=True to replace it")
    spec = _REGISTRY[op_name] = _spec_for(func, op_name, description, uses_llm)
    return spec


def operator(
    name: str | None = None, *, description: str | None = None, uses_llm: bool = True, replace: bool = False
) -> Callable[[F], F]:
    """Register the decorated async function as an operator (named after the function by default)."""

    def decorate(func: F) -> F:
        register_operator(func, name=name, description=description, uses_llm=uses_llm, replace=replace)
        return func

    return decorate


def get_operator(name: str) -> OperatorSpec:
    """The operator registered as ``name``; ``ConfigurationError`` listing the known ones if there is none."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigurationError(f"unknown operator {name!r}; registered operators: {known}") from None


def list_operators() -> list[OperatorSpec]:
    """Every registered operator, built-in ones included, by name."""
    _load_builtins()
    return sorted(_REGISTRY.values(), key=lambda s: s.name)


_builtins_loaded = False


def _load_builtins() -> None:
    # The built-in operators register themselves on import; importing them here, not at package import,
    # keeps `import nons` light and avoids an import cycle with the node module.
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # before the import: the built-ins register themselves through this module
        try:
            from nons.operators import deterministic, llm  # noqa: F401
        except BaseException:
            _builtins_loaded = False
            raise
