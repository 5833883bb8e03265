"""What a vendor SDK would otherwise load at its first call, loaded ahead on the worker thread that makes its client.

The first request through an SDK does work no later request repeats, and it does it on the event loop's thread:

- the SDKs define their answers as pydantic models whose validators are built on first use (pydantic's deferred
  build): reading the first answer completes every model class it contains, 20 to 150 ms per SDK;
- modules the SDKs, or NoN's own call scope, import on first use (anyio's asyncio backend, jiter,
  ``opentelemetry-util-genai``'s invocation types: 30 ms).

:func:`warm_sdk` does all of that once, on the worker thread :class:`~nons.providers._clients.ClientCache` makes the
first client on, so the loop runs on meanwhile. A failure to warm something is not an error: the first call would
then build it itself, as it would have without this.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import typing
from collections.abc import Iterable
from typing import Any

import pydantic

from nons.observability.suppression import preload_inference_marker

__all__ = ["model_classes", "warm_sdk"]

logger = logging.getLogger(__name__)


def model_classes(roots: Iterable[Any]) -> list[type[pydantic.BaseModel]]:
    """Every pydantic model class reachable from ``roots`` through field annotations (``Optional``, ``list``,
    unions, ``Annotated`` and other generic forms are looked through), roots first."""
    seen: set[type[pydantic.BaseModel]] = set()
    found: list[type[pydantic.BaseModel]] = []
    pending = list(roots)
    while pending:
        annotation = pending.pop(0)
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            if annotation is pydantic.BaseModel or annotation in seen:
                continue
            seen.add(annotation)
            found.append(annotation)
            pending.extend(field.annotation for field in annotation.model_fields.values())
            continue
        pending.extend(typing.get_args(annotation))
        origin = typing.get_origin(annotation)
        if origin is not None:
            pending.append(origin)
    return found


def warm_sdk(modules: Iterable[str], models: Iterable[Any]) -> None:
    """Import ``modules`` and build the validators of every model class reachable from ``models`` (one class at
    a time: each build is Python work the interpreter interrupts for the loop's thread, but for the final
    validator construction, a few milliseconds); then what NoN's call scope imports at the first call."""
    for module in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    for model in model_classes(models):
        if not model.__pydantic_complete__:
            try:
                model.model_rebuild()
            except Exception:  # an optimisation only: the first answer builds it otherwise
                logger.debug("could not build the validator of %r ahead of the first call", model, exc_info=True)
    preload_inference_marker()
