"""The operator registry and the ``@operator`` decorator.

An operator is an async function ``(ctx, input, **params)``: ``input`` is what the previous layer passed,
``params`` come from the node's configuration, and ``ctx`` (an :class:`~nons.operators.context.OperatorContext`)
gives LLM operators the node's model, context and call path.

    @operator(description="Say hello in the node's language.")
    async def greet(ctx: OperatorContext, input: str, language: str = "English") -> str:
        return (await ctx.complete(f"Greet {input} in {language}.")).text
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, overload

from nons.base.errors import ConfigurationError

# Importing the built-in modules marks their operators (see nons.operators.spec); they never import this module.
from nons.operators import deterministic, llm  # noqa: F401
from nons.operators.spec import OperatorFunc, OperatorSpec, builtin_specs, spec_for

__all__ = ["OperatorSpec", "get_operator", "list_operators", "operator", "register_operator"]

F = TypeVar("F", bound=OperatorFunc)

_REGISTRY: dict[str, OperatorSpec] = {spec.name: spec for spec in builtin_specs()}


def register_operator(
    func: OperatorFunc, *, name: str | None = None, description: str | None = None, uses_llm: bool = True,
    replace: bool = False,
) -> OperatorSpec:
    """Register ``func`` as an operator and return its spec.

    A name that is taken, by a built-in or an earlier registration, is refused unless ``replace=True``.
    """
    if not callable(func):
        raise ConfigurationError(f"an operator must be an async function, got {type(func).__name__}: {func!r}")
    if name is not None and not isinstance(name, str):
        raise ConfigurationError(f"an operator's name must be a string, got {type(name).__name__}")
    op_name = name if name else str(getattr(func, "__name__", ""))
    if not op_name.isidentifier():
        raise ConfigurationError(f"operator name {op_name!r} must be an identifier")
    if op_name in _REGISTRY and not replace:
        raise ConfigurationError(f"operator {op_name!r} is already registered; pass replace=True to replace it")
    spec = _REGISTRY[op_name] = spec_for(func, op_name, description, uses_llm)
    return spec


@overload
def operator(name: F, /) -> F: ...


@overload
def operator(
    name: str | None = None, *, description: str | None = None, uses_llm: bool = True, replace: bool = False
) -> Callable[[F], F]: ...


def operator(
    name: str | F | None = None, *, description: str | None = None, uses_llm: bool = True, replace: bool = False
) -> Callable[[F], F] | F:
    """Register the decorated async function as an operator (named after the function by default). Used bare
    (``@operator``) or called (``@operator("name", description=...)``)."""
    if callable(name):  # @operator without parentheses: the function itself
        register_operator(name)
        return name
    if name is not None and not isinstance(name, str):
        raise ConfigurationError(f"an operator's name must be a string, got {type(name).__name__}")
    op_name = name

    def decorate(func: F) -> F:
        register_operator(func, name=op_name, description=description, uses_llm=uses_llm, replace=replace)
        return func

    return decorate


def get_operator(name: str) -> OperatorSpec:
    """The operator registered as ``name``; ``ConfigurationError`` listing the known ones if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigurationError(f"unknown operator {name!r}; registered operators: {known}") from None


def list_operators() -> list[OperatorSpec]:
    """Every registered operator, built-in ones included, by name."""
    return sorted(_REGISTRY.values(), key=lambda s: s.name)
