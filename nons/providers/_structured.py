"""How a typed answer is asked of a vendor: which structured-output form a request uses, and the schema forms the
vendors accept.

A request with a ``response_schema`` asks for a JSON answer. :func:`output_form` says how, from
``ModelConfig.structured_output``; each vendor module turns the form into its own request fields in ``_request``:

========================  ==========================================  ==============================  ==============
form                      OpenAI (and compatible servers)             Gemini                          Anthropic
========================  ==========================================  ==============================  ==============
``JSON_SCHEMA``           ``response_format`` ``json_schema``         ``response_mime_type`` JSON     ``output_config
                          (``strict`` when :func:`strict_schema`      and ``response_json_schema``    .format``
                          allows)                                                                     ``json_schema``
``JSON_OBJECT``           ``response_format`` ``json_object`` (with   ``response_mime_type`` JSON     (no JSON mode:
                          ``schema`` for a compatible server)                                         prompt only)
``PROMPT``                none                                        none                            none
========================  ==========================================  ==============================  ==============

The schema goes into the system prompt as an instruction only when the form does not send it natively
(``_wire.system_text(..., schema_in_prompt=...)``): the prompt is the fallback, not a second copy.

Nothing here imports a vendor SDK.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from nons.base.messages import LLMRequest
from nons.base.types import StructuredOutput

__all__ = ["output_form", "schema_name", "strict_schema", "with_form"]

# Keywords OpenAI's strict mode accepts (its documented subset); a schema using any other is sent non-strict.
_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
        "$defs", "definitions", "description", "title", "default", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    }
)  # fmt: skip
_NAME_CHARACTERS = re.compile(r"[^a-zA-Z0-9_-]+")


def output_form(request: LLMRequest) -> StructuredOutput | None:
    """The structured-output form of ``request``: ``None`` when it asks for no typed answer.

    ``AUTO`` means the vendor's native schema form (``JSON_SCHEMA``); an OpenAI-compatible server's form is
    negotiated before the request is built, so ``_request`` never sees ``AUTO``.
    """
    if request.response_schema is None:
        return None
    form = request.config.structured_output
    return StructuredOutput.JSON_SCHEMA if form is StructuredOutput.AUTO else form


def with_form(request: LLMRequest, form: StructuredOutput) -> LLMRequest:
    """``request`` with its config's ``structured_output`` set to ``form``."""
    return dataclasses.replace(request, config=request.config.model_copy(update={"structured_output": form}))


def schema_name(schema: Mapping[str, Any]) -> str:
    """The name OpenAI's ``json_schema`` format needs (``^[a-zA-Z0-9_-]{1,64}$``): the schema's title, else
    ``answer``."""
    title = schema.get("title")
    name = _NAME_CHARACTERS.sub("_", title).strip("_")[:64] if isinstance(title, str) else ""
    return name or "answer"


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """``schema`` as OpenAI's strict mode wants it, or ``None`` when strict mode cannot express it.

    Strict mode constrains decoding to the schema exactly, but asks two things of every object: all its
    properties are required, and no others are allowed. A missing ``additionalProperties`` is added as
    ``false`` (the operators never want extra keys); an optional property, open additional properties or a
    keyword outside strict mode's subset mean the schema is sent without ``strict``.
    """
    strict = copy.deepcopy(dict(schema))
    return strict if _make_strict(strict) else None


def _make_strict(node: Any) -> bool:
    if isinstance(node, list):
        return all(_make_strict(item) for item in node)
    if not isinstance(node, dict):
        return True
    if not set(node) <= _STRICT_KEYWORDS:
        return False
    if node.get("type") == "object" or "properties" in node:
        properties = node.get("properties", {})
        if not isinstance(properties, dict) or set(node.get("required", ())) != set(properties):
            return False
        if node.setdefault("additionalProperties", False) is not False:
            return False
        if not all(_make_strict(sub) for sub in properties.values()):
            return False
    for key in ("items", "anyOf"):
        if key in node and not _make_strict(node[key]):
            return False
    for key in ("$defs", "definitions"):
        if key in node and not (isinstance(node[key], dict) and all(_make_strict(s) for s in node[key].values())):
            return False
    return True
