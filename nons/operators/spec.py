"""What an operator is: :class:`OperatorSpec`, built from an async function, and the built-in marker.

The built-in operator modules (:mod:`~nons.operators.llm`, :mod:`~nons.operators.deterministic`) mark their
functions with :func:`builtin`; the registry imports them and registers what they marked. Nothing here imports the
registry, so imports point one way: spec, then the built-ins, then the registry.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nons.base.errors import ConfigurationError
from nons.base.redaction import clean, hide_credential_params

__all__ = ["NODE_KEYWORDS", "OperatorFunc", "OperatorSpec", "builtin", "builtin_specs", "spec_for"]

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
    #: The function takes ``**params``: a node may give it parameters of any other name.
    takes_any: bool = False

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.parameters.items() if p.default is inspect.Parameter.empty)

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` checked against the function's signature: ``ConfigurationError`` naming any unknown or
        missing parameter, or a value its annotation refuses (validated by pydantic, in its lax mode: ``"2"`` passes
        for an ``int``, a list for a ``tuple``). The values are passed on as given, never pydantic's copies: an
        application's ``defaultdict`` stays one, and a list it shares stays shared."""
        unknown = sorted(set(params) - set(self.parameters))
        if unknown and not self.takes_any:
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
        for name, value in params.items():
            _validate(self, name, value)
        return dict(params)


#: ``Node``'s own keyword arguments: an operator parameter of one of these names could never be given to a node.
NODE_KEYWORDS = frozenset(
    {"operator_name", "model_config", "additional_prompt_context", "fallbacks", "priority", "cache"}
)


def _validate(spec: OperatorSpec, name: str, value: Any) -> None:
    """Refuse ``value`` for ``spec``'s parameter ``name`` when its annotation does (nothing is checked when it is
    unannotated, or when the annotation cannot be resolved or validated)."""
    adapter = _adapter(spec.func, name)
    if adapter is None:
        return
    from pydantic import ValidationError

    try:
        adapter.validate_python(value)
    except ValidationError as error:
        # The value as it may be shown: a parameter, or a key within it, named like a credential is hidden, and
        # a key NoN knows is redacted (the message reaches nons check's output and logs).
        shown = clean(repr(hide_credential_params({name: value})[name]))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ConfigurationError(f"operator {spec.name!r}, parameter {name}{_problems(error)} (got {shown})") from None


def _problems(error: Any) -> str:
    """What a pydantic ``ValidationError`` found, as ``[where]: what``; a value that matches no member of a union
    gets each member's complaint (their locations name pydantic's validators, not the value's parts)."""
    found = error.errors(include_url=False)
    if len(found) == 1:
        where = "".join(f"[{p!r}]" for p in found[0]["loc"])
        return f"{where}: {found[0]['msg']}"
    complaints = list(dict.fromkeys(problem["msg"] for problem in found))
    return ": matches none of its types (" + "; ".join(complaints) + ")"


@functools.lru_cache(maxsize=1024)
def _adapter(func: OperatorFunc, name: str) -> Any:
    """A pydantic ``TypeAdapter`` for ``func``'s parameter ``name``, or ``None`` when there is nothing to check:
    no annotation, ``Any``, or one that cannot be resolved (a name imported only for type checkers) or turned
    into a schema. Built once per parameter, when a node first gives it a value (pydantic is not needed before)."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # an application's annotations may name what is not importable at run time
        return None
    annotation = hints.get(name)
    if annotation is None or annotation is Any:
        return None
    from pydantic import ConfigDict, TypeAdapter

    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # a type pydantic cannot validate (a Protocol, a generic alias of its own)
        return None


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
    rest = list(signature.parameters.values())[2:]
    parameters = {p.name: p for p in rest if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    clashing = sorted(NODE_KEYWORDS & set(parameters))
    if clashing:
        raise ConfigurationError(
            f"operator {name!r} has parameter(s) {', '.join(clashing)}, which Node takes as its own; rename them"
        )
    takes_any = any(p.kind is p.VAR_KEYWORD for p in rest)
    doc = description or inspect.getdoc(func) or ""
    return OperatorSpec(name, func, doc.splitlines()[0] if doc else "", uses_llm, parameters, takes_any=takes_any)


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
