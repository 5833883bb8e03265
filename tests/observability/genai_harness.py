"""What the GenAI convention tests share: the conventions' JSON schemas, the inference events NoN emits, and
the attributes each span had when it started.

The schemas in ``genai_schemas/`` are written from the GenAI semantic conventions' own (gen-ai-input-messages.json,
gen-ai-output-messages.json, gen-ai-system-instructions.json, gen-ai-tool-definitions.json in
open-telemetry/semantic-conventions-genai): the same definitions, requirements and enums. Their ``anyOf`` ends
with ``GenericPart`` (any object with a ``type``), so a malformed ``tool_call`` part would still pass as generic;
:func:`validate` therefore also checks every part of a known type against that type's own definition.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry import _logs, context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
except ImportError:  # SDK < 1.39 (the oldest-SDK stage): the same exporter under its older name
    from opentelemetry.sdk._logs.export import (  # type: ignore[attr-defined,no-redef]
        InMemoryLogExporter as InMemoryLogRecordExporter,
    )
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from otel_harness import SessionSDK

from nons.observability import names
from nons.observability.buffer import ReadableLogRecord  # the SDK has renamed it: this is whichever it has
from nons.observability.setup import build_resource

SCHEMAS = Path(__file__).parent / "genai_schemas"
#: The attribute each schema describes.
SCHEMA_OF = {
    names.GEN_AI_INPUT_MESSAGES: "gen-ai-input-messages.json",
    names.GEN_AI_OUTPUT_MESSAGES: "gen-ai-output-messages.json",
    names.GEN_AI_SYSTEM_INSTRUCTIONS: "gen-ai-system-instructions.json",
    names.GEN_AI_TOOL_DEFINITIONS: "gen-ai-tool-definitions.json",
}
_PART_DEFS = {
    "text": "TextPart",
    "tool_call": "ToolCallRequestPart",
    "tool_call_response": "ToolCallResponsePart",
    "reasoning": "ReasoningPart",
    "blob": "BlobPart",
    "file": "FilePart",
    "uri": "UriPart",
}


@cache
def schema(file_name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / file_name).read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def validate(attribute: str, value: Any) -> Any:
    """Validate ``value`` (a JSON string as on a span, or the structured form of an event) against the schema of
    ``attribute``, with every known part type checked against its own definition. Returns the structured value."""
    document = json.loads(value) if isinstance(value, str) else value
    root = schema(SCHEMA_OF[attribute])
    jsonschema.validate(document, root, cls=jsonschema.Draft202012Validator)
    for part in _parts(attribute, document):
        definition = _PART_DEFS.get(part["type"])
        if definition is not None:
            jsonschema.validate(part, {**root["$defs"][definition], "$defs": root["$defs"]})
    return document


def _parts(attribute: str, document: Any) -> Iterator[dict[str, Any]]:
    if attribute == names.GEN_AI_SYSTEM_INSTRUCTIONS:
        yield from document
    elif attribute in (names.GEN_AI_INPUT_MESSAGES, names.GEN_AI_OUTPUT_MESSAGES):
        for message in document:
            yield from message["parts"]


# -- events -----------------------------------------------------------------------------------------------------


@dataclass
class Events:
    """The ``gen_ai.client.inference.operation.details`` events emitted during one test."""

    exporter: InMemoryLogRecordExporter

    def inference(self) -> list[ReadableLogRecord]:
        return [
            r
            for r in self.exporter.get_finished_logs()
            if r.log_record.event_name == names.EVENT_INFERENCE_DETAILS
        ]


_session_events: InMemoryLogRecordExporter | None = None


@pytest.fixture
def events() -> Iterator[Events]:
    """NoN's log events, as an application's logger provider would receive them: the global SDK provider when
    one is installed (an in-memory exporter is added to it once), else one installed here."""
    global _session_events
    if _session_events is None:
        provider = _logs.get_logger_provider()
        if not isinstance(provider, LoggerProvider):
            provider = LoggerProvider(resource=build_resource(), shutdown_on_exit=False)
            _logs.set_logger_provider(provider)
            if _logs.get_logger_provider() is not provider:
                pytest.skip("a non-SDK logger provider is installed in this process")
        _session_events = InMemoryLogRecordExporter()
        provider.add_log_record_processor(SimpleLogRecordProcessor(_session_events))
    _session_events.clear()
    yield Events(_session_events)
    _session_events.clear()


# -- attributes at span start ------------------------------------------------------------------------------------


@dataclass
class StartAttributes(SpanProcessor):
    """Records each span's attributes as they were when it started (what a sampler sees)."""

    recording: bool = False
    at_start: dict[int, dict[str, Any]] = field(default_factory=dict)

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        if self.recording:
            self.at_start[span.context.span_id] = dict(span.attributes or {})

    def of(self, span: ReadableSpan) -> dict[str, Any]:
        assert span.context is not None
        return self.at_start[span.context.span_id]


_start_recorder: StartAttributes | None = None


@pytest.fixture
def started(sdk: SessionSDK) -> Iterator[StartAttributes]:
    """The attributes every span of the test had when it started."""
    global _start_recorder
    if _start_recorder is None:
        _start_recorder = StartAttributes()
        sdk.tracer_provider.add_span_processor(_start_recorder)
    _start_recorder.at_start.clear()
    _start_recorder.recording = True
    try:
        yield _start_recorder
    finally:
        _start_recorder.recording = False
        _start_recorder.at_start.clear()
