"""Typed answers: reading a model's JSON answer, checking it against its schema, and repairing it.

An operator that needs a typed answer (``classify``, ``extract``, ``validate``, ``route``, ``compare``, an agent's
output schema) sends a JSON Schema with its call; the provider asks for it natively (see
:mod:`nons.providers._structured`). What comes back is still checked here, because not every server constrains
its decoding, and those that do may not enforce everything (Anthropic's format and llama.cpp's grammars leave
numeric ranges out; OpenAI's strict mode has no string lengths):

1. :func:`parse_json_object` finds the JSON object in the text (code fences and prose around it are tolerated);
2. :func:`conform` forgives what has one obvious reading (an enum value in another case, a number sent as a
   string, a missing property that may be null) and clamps what a server may not have enforced: numeric ranges,
   string and list maxima;
3. the answer is validated against the schema with ``jsonschema``: not JSON, a wrong type, a value outside the
   enum, a missing property is refused with a message naming the field.

An answer cut off by the token limit is kept when the cut fell inside free text (see
:mod:`nons.operators.truncated`); otherwise it is refused as truncated.

When an answer is refused, :func:`complete_structured` sends the error back to the model with its answer (an
answer cut off by the token limit: the error only, see :func:`repair_turns`), up to
``repairs`` times (``ModelConfig.output_repairs``, else ``NON_OUTPUT_REPAIRS``), then raises
:class:`~nons.base.errors.OutputParseError`. Each repair is an ordinary call through the engine's call path, so
the scheduler, the budget and the cost see it; its span carries a ``nons.output_repair`` event.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nons.base.errors import ConfigurationError, OutputParseError
from nons.base.messages import TOKEN_LIMIT_STOPS, LLMResponse, Message, OutputRepair
from nons.base.schema_refs import MAX_REF_HOPS, resolve_ref
from nons.base.types import ModelConfig
from nons.observability import names
from nons.operators.truncated import salvage

__all__ = [
    "check_schema",
    "complete_structured",
    "conform",
    "parse_json_object",
    "read_answer",
    "repair_message",
    "repair_turns",
    "repairs_allowed",
    "try_read",
]

#: The call that sends ``messages`` (a repair when the second argument is set) and returns the model's answer.
SendFunction = Callable[[list[Message], OutputRepair | None], Awaitable[LLMResponse]]

_MAX_ERRORS = 5  # schema errors quoted in one refusal; more only make the repair prompt longer
_MAX_ERROR_CHARS = 300


def repairs_allowed(config: ModelConfig) -> int:
    """How many repairs a typed answer from ``config``'s model gets: ``output_repairs``, else
    ``NON_OUTPUT_REPAIRS``."""
    if config.output_repairs is not None:
        return config.output_repairs
    from nons.base.settings import get_settings  # on use: it loads pydantic-settings

    return get_settings().output_repairs


def _validator(schema: Mapping[str, Any]) -> Any:
    # jsonschema (with referencing, attrs and rpds) costs ~45 ms to import: only typed answers pay it.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``ConfigurationError`` naming the problem when ``schema`` is not a valid JSON Schema of a JSON
    object."""
    from jsonschema import Draft202012Validator, SchemaError  # on use, as in _validator

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise ConfigurationError(f"invalid output schema: {error.message}") from None
    # An answer is read as a JSON object: a schema of anything else could never be met, and each answer would
    # cost its repairs before the call failed.
    types = _types(resolve_ref(schema, schema))
    if types and "object" not in types:
        raise ConfigurationError(
            f"an output schema describes a JSON object (type 'object'), got type {sorted(types)}: put the value in "
            "a property of an object, e.g. {'type': 'object', 'properties': {'items': <this schema>}}"
        )


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer, tolerating code fences and prose around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    if start == -1 or end <= start:
        raise OutputParseError(f"expected a JSON object, got: {text[:200]!r}")
    try:
        value = json.loads(stripped[start : end + 1])
    except json.JSONDecodeError as error:
        raise OutputParseError(f"the answer is not valid JSON ({error}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise OutputParseError(f"expected a JSON object, got {type(value).__name__}")
    return value


def read_answer(value: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` conformed to ``schema`` (:func:`conform`), or ``OutputParseError`` naming each violation."""
    validator = _validator(schema)  # one for the anyOfs conform meets and the check after it
    conformed = _Conformer(schema, validator).conform(value, schema)
    errors = sorted(validator.iter_errors(conformed), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(_describe(error) for error in errors[:_MAX_ERRORS])
        raise OutputParseError(f"the answer does not follow the schema: {problems}")
    result: dict[str, Any] = conformed
    return result


def _describe(error: Any) -> str:
    path = "/".join(str(part) for part in error.absolute_path)
    message = str(error.message)
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "..."
    return f"{path}: {message}" if path else message


def conform(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """``value`` made to fit ``schema`` where that has one reading, so that only real mistakes cost a repair.

    - Forgiven: an enum string in another case or with spaces around it (the enum's spelling is kept); a number
      sent as a string; a missing property that may be null (set to null).
    - Clamped: the schema's bounds, which not every server enforces while decoding (llama.cpp's grammars leave
      numeric ranges out, Anthropic's format leaves out every bound): a number is brought into
      ``minimum``..``maximum``, a string cut to ``maxLength``, a list to ``maxItems``.
    - Left for the check to refuse: everything else. A boolean stays as given (``"true"`` is not ``true``), a
      value outside an enum stays outside it, a list shorter than ``minItems`` stays short.

    ``root`` is the whole schema when ``schema`` is a part of it: the references (``$ref``) in ``schema`` (a pydantic
    model's nested models, ``#/$defs/...``) point into it. Left out, ``schema`` is the whole.
    """
    return _Conformer(root if root is not None else schema).conform(value, schema)


class _Conformer:
    """:func:`conform` over one schema, whose local references (``$ref``) it follows."""

    def __init__(self, root: Mapping[str, Any], validator: Any = None) -> None:
        self.root = root
        self._validator: Any = validator  # of ``root``; else made on first use: most answers meet no anyOf

    def conform(self, value: Any, schema: Mapping[str, Any], hops: int = 0) -> Any:
        # ``hops``: anyOfs entered on the same value. A schema whose anyOf leads back to itself would be entered
        # for ever; past the bound the value is left for the check.
        schema = resolve_ref(schema, self.root)
        if "anyOf" in schema:
            if hops >= MAX_REF_HOPS:
                return value
            for option in schema["anyOf"]:
                candidate = self.conform(value, option, hops + 1)
                if self._valid(candidate, option):
                    return candidate
            return value
        if isinstance(value, str) and "enum" in schema:
            wanted = value.strip().lower()
            return next((o for o in schema["enum"] if isinstance(o, str) and o.lower() == wanted), value)
        types = _types(schema)
        if isinstance(value, str) and types & {"number", "integer"}:
            value = _number(value, integer="number" not in types)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _clamp(value, schema)
        if isinstance(value, str) and isinstance(schema.get("maxLength"), int):
            return value[: schema["maxLength"]]
        if isinstance(value, dict) and "object" in types:
            return self._object(value, schema)
        if isinstance(value, list) and "array" in types:
            items = schema.get("items")
            kept = value[: schema["maxItems"]] if isinstance(schema.get("maxItems"), int) else value
            return [self.conform(item, items) for item in kept] if isinstance(items, Mapping) else kept
        return value

    def _object(self, value: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties", {})
        out = {key: self.conform(item, properties[key]) if key in properties else item for key, item in value.items()}
        for key in schema.get("required", ()):
            if key not in out and key in properties and self._nullable(properties[key]):
                out[key] = None
        return out

    def _nullable(self, schema: Mapping[str, Any], hops: int = 0) -> bool:
        schema = resolve_ref(schema, self.root)
        if "null" in _types(schema):
            return True
        return hops < MAX_REF_HOPS and any(self._nullable(option, hops + 1) for option in schema.get("anyOf", ()))

    def _valid(self, value: Any, schema: Mapping[str, Any]) -> bool:
        # A validator of the whole schema, evolved to the part: the part's $refs resolve against the whole.
        if self._validator is None:
            self._validator = _validator(self.root)
        try:
            return bool(self._validator.evolve(schema=schema).is_valid(value))
        except RecursionError:  # an anyOf that leads back to itself, which jsonschema follows for ever too
            return False

def _clamp(number: float, schema: Mapping[str, Any]) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, (int, float)) and number < low:
        return low
    if isinstance(high, (int, float)) and number > high:
        return high
    return number


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    return {str(k) for k in kind} if isinstance(kind, list) else set()


def _number(text: str, *, integer: bool) -> Any:
    try:
        number = float(text.strip())
    except ValueError:
        return text
    if integer:
        return int(number) if number.is_integer() else text
    return number


def repair_message(error: OutputParseError) -> str:
    """The user turn that sends ``error`` back to the model, after its unusable answer."""
    return f"Your previous answer cannot be used: {error}\nAnswer again with only the corrected JSON object."


def repair_turns(answer: str, error: OutputParseError, reason: str) -> list[Message]:
    """The turns a repair adds to the conversation: the unusable answer, then the error.

    An answer cut off by the token limit is not sent back, only the error: nothing in it is wrong but its length,
    all of it would double the prompt, and it ends in whatever ran on (a small model's runaway repetition), which
    the model, shown it again, continues."""
    if reason == names.REPAIR_TRUNCATED:
        return [Message("user", f"{repair_message(error)} Keep it shorter.")]
    return [Message("assistant", answer), Message("user", repair_message(error))]


async def complete_structured(
    send: SendFunction, messages: list[Message], schema: Mapping[str, Any], repairs: int
) -> dict[str, Any]:
    """Call the model through ``send`` until its answer is a JSON object that follows ``schema``.

    An unusable answer is sent back with the error (:func:`repair_message`) up to ``repairs`` times; then the
    last error is raised as ``OutputParseError``, saying how many repairs were tried.
    """
    response = await send(messages, None)
    number = 0
    while True:
        value, reason, error = try_read(response.text, schema, response.finish_reason)
        if value is not None:
            return value
        assert error is not None
        if number >= repairs:
            tried = f" (after {repairs} repair{'s' if repairs != 1 else ''})" if repairs else ""
            raise OutputParseError(f"{error}{tried}")
        number += 1
        messages = [*messages, *repair_turns(response.text, error, reason)]
        response = await send(messages, OutputRepair(number, reason, str(error), response.answered_by))


def try_read(
    text: str, schema: Mapping[str, Any], finish_reason: str | None = None
) -> tuple[dict[str, Any] | None, str, OutputParseError | None]:
    """``(answer, "", None)`` when ``text`` holds a usable answer, else ``(None, reason, error)``: why it cannot
    be used, as a repair reason (``invalid_json``, ``schema_mismatch``, ``truncated`` when the answer stopped at
    the token limit) and the error to send back. A cut-off answer is kept when the cut fell in free text
    (:func:`~nons.operators.truncated.salvage`) and the rest follows the schema."""
    try:
        value = parse_json_object(text)
    except OutputParseError as error:
        if finish_reason not in TOKEN_LIMIT_STOPS:
            return None, names.REPAIR_INVALID_JSON, error
        kept = salvage(text, schema)
        if kept is not None:
            with contextlib.suppress(OutputParseError):
                return read_answer(kept, schema), "", None
        # The error names no part of the answer: quoting a runaway would show it to the model again.
        cut = OutputParseError(
            f"the answer was cut off at the token limit after {len(text)} characters, before its JSON was complete"
        )
        return None, names.REPAIR_TRUNCATED, cut
    try:
        return read_answer(value, schema), "", None
    except OutputParseError as error:
        return None, names.REPAIR_SCHEMA_MISMATCH, error
