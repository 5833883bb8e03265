"""Telling other GenAI instrumentations that NoN already records the SDK call it is making.

OpenLIT, OpenLLMetry and the contrib ``opentelemetry-instrumentation-openai-v2`` (and the other contrib GenAI
instrumentations built on ``opentelemetry-util-genai``) wrap the same SDK methods NoN's providers call, and
record the same ``gen_ai.client.*`` metrics. While a provider sends its request, :func:`sdk_call_scope` sets the
context keys those instrumentations honour, as LLM frameworks do:

- ``suppress_language_model_instrumentation`` (a plain string key, set to ``True``): OpenLLMetry's
  instrumentations (``opentelemetry-instrumentation-openai``, ``-anthropic``, ...) skip their span and metrics;
- ``opentelemetry.genai.client.inference.context`` holding an ``InferenceData``: ``opentelemetry-util-genai``
  turns the inner invocation into a suppressed one (no span, no metrics, no event). It is set only when that
  package is installed, since an instrumentation that honours it depends on it.

Not set: OpenTelemetry's general ``suppress_instrumentation`` key. It would also silence every HTTP
instrumentation under the call, NoN's own per-attempt HTTP spans among them, and the application's.
Instrumentations that honour no key at all (OpenLIT's OpenAI wrapper; the contrib ``openai-v2`` unless
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``) still record: the dashboards keep them out by
filtering every query on NoN's instrumentation scope (``otel_scope_name="nons"``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

from opentelemetry import context as otel_context

__all__ = ["LANGUAGE_MODEL_SUPPRESSION_KEY", "UTIL_GENAI_INFERENCE_KEY", "preload_inference_marker", "sdk_call_scope"]

#: OpenLLMetry's key (``opentelemetry.semconv_ai.SUPPRESS_LANGUAGE_MODEL_INSTRUMENTATION_KEY``).
LANGUAGE_MODEL_SUPPRESSION_KEY: Final = "suppress_language_model_instrumentation"
#: ``opentelemetry-util-genai``'s key (``opentelemetry.util.genai.invocation.CLIENT_INFERENCE_CONTEXT_KEY``).
UTIL_GENAI_INFERENCE_KEY: Final = "opentelemetry.genai.client.inference.context"

_inference_data: Any = None  # the class, once looked up; False when the package is not installed


def preload_inference_marker() -> None:
    """Look up ``opentelemetry-util-genai``'s ``InferenceData`` now: importing the package takes about 30 ms, which
    the first SDK call would otherwise spend on the event loop's thread (the providers call this on the worker
    thread that makes their first client)."""
    global _inference_data
    if _inference_data is None:
        try:
            from opentelemetry.util.genai.invocation import InferenceData
        except ImportError:
            _inference_data = False
        else:
            _inference_data = InferenceData


def _util_genai_marker() -> Any:
    """A fresh ``InferenceData`` (inner invocations merge their data into it), or ``None`` without the package."""
    preload_inference_marker()
    return _inference_data() if _inference_data else None


@contextlib.contextmanager
def sdk_call_scope() -> Iterator[None]:
    """Make the current context say "this SDK call is already instrumented" for as long as the block runs."""
    ctx = otel_context.set_value(LANGUAGE_MODEL_SUPPRESSION_KEY, True)
    marker = _util_genai_marker()
    if marker is not None:
        ctx = otel_context.set_value(UTIL_GENAI_INFERENCE_KEY, marker, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
