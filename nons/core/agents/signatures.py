"""A tool's parameters, read from its function: the signature, the type hints, and the pydantic model that
validates the arguments a model sends (and whose JSON Schema the model is offered)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, PydanticUserError, create_model

from nons.base.errors import ConfigurationError

__all__ = ["check_accepts", "doc_summary", "params_model", "signature_of", "type_hints"]


def signature_of(func: Callable[..., Any], name: str) -> inspect.Signature:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"cannot read the signature of tool {name!r}: {error}") from None


def type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    target = func.func if isinstance(func, functools.partial) else func
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        pass
    # A hint that names something not importable at module level (a class local to a function, under
    # ``from __future__ import annotations``) must not lose the others: each is resolved on its own, and one that
    # cannot be is left out (the parameter is then taken as Any) rather than refusing the tool.
    hints: dict[str, Any] = {}
    namespace = getattr(target, "__globals__", {})
    for name, annotation in getattr(target, "__annotations__", {}).items():
        with contextlib.suppress(Exception):
            hints[name] = typing.get_type_hints(_OneHint(name, annotation), namespace, include_extras=True)[name]
    return hints


class _OneHint:
    """An object with one annotation, for ``typing.get_type_hints`` to resolve on its own."""

    def __init__(self, name: str, annotation: Any) -> None:
        self.__annotations__ = {name: annotation}


def params_model(
    tool_name: str, signature: inspect.Signature, hints: dict[str, Any], *, skip: str | None
) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.name == skip:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"tool {tool_name!r}: parameter {param.name!r} must be a named parameter (no *args, **kwargs or "
                "positional-only); or pass param_model="
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    # extra="forbid": a misspelt argument is reported to the model instead of silently dropped.
    model_name = "".join(part.capitalize() for part in re.split(r"[_-]", tool_name)) + "Params"
    try:
        model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    except (PydanticUserError, NameError, ValueError) as error:  # a type pydantic cannot validate, a reserved name
        raise ConfigurationError(f"tool {tool_name!r}: {error}") from None
    # pydantic leaves out, without a word, names it keeps for itself (model_config) or takes as private (_x):
    # the model could then never pass them, and every call would fail.
    dropped = [name for name in fields if name not in model.model_fields]
    if dropped:
        raise ConfigurationError(
            f"tool {tool_name!r}: parameter(s) {dropped} cannot be tool arguments (pydantic keeps model_config "
            "and names starting with '_' for itself); rename them, or pass param_model="
        )
    return model


def check_accepts(tool_name: str, signature: inspect.Signature, names: list[str]) -> None:
    try:
        signature.bind(**dict.fromkeys(names))
    except TypeError as error:
        raise ConfigurationError(
            f"tool {tool_name!r} cannot take its param_model's fields {names} as keyword arguments: {error}"
        ) from None


def doc_summary(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()
