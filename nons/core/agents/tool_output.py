"""What the model reads of a tool's output: text as it is, anything else as JSON data (:func:`jsonable`)."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_jsonable_python

from nons.base.redaction import encodable

__all__ = ["jsonable", "output_text"]


def output_text(output: Any) -> str:
    """What the model reads of a tool's output: text as it is, anything else as JSON (pydantic models, dataclasses
    and sets as pydantic serializes them, bytes as base64, NaN and infinities as null, a value with no JSON form as
    its ``str()``). Lone surrogates (a file name decoded with ``surrogateescape``, say), which no provider's JSON
    body can carry, become U+FFFD. Raises ``ValueError`` for a value that contains itself."""
    if isinstance(output, str):
        return encodable(output)
    try:
        text = json.dumps(jsonable(output), ensure_ascii=False, allow_nan=False)
    except UnicodeError:  # a lone surrogate where pydantic's encoder cannot take one (a key): the standard one can
        text = json.dumps(output, ensure_ascii=False, default=str)
    return encodable(text)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, as a tool's output is read: pydantic models, dataclasses and sets as pydantic
    serializes them, bytes as base64, NaN and infinities as ``None``, a value with no JSON form as its ``str()``."""
    return to_jsonable_python(value, fallback=str, inf_nan_mode="null", bytes_mode="base64")
