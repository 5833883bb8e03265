"""One span's life in the engine: start, make current, fail, roll up, end.

Network passes, layers, nodes, LLM calls, agent runs and tool calls all hold a :class:`SpanScope`, so what a
failed span carries (status ERROR and ``error.type``) and what a roll-up sums are written once::

    scope = spans.start(inst.tracer, name, attributes) if inst.tracing else spans.NO_SPAN
    try:
        with scope:                      # current: child spans (HTTP, LLM, tools) nest under it
            ...
    except BaseException as error:
        scope.fail(error)
        raise
    finally:
        scope.roll_up(calls)
        scope.end()

With tracing off the engine holds :data:`NO_SPAN`, one shared scope whose methods do nothing: no span, no
context switch and no allocation on the hot path. ``scope.tracing`` says which one it is, so that a caller
builds attribute dicts only when they will be recorded.

Every string a scope records (span name, attribute values and keys, event attributes, status description) is
cleaned once, here, by :func:`nons.base.redaction.clean`: API keys redacted, and lone surrogates replaced, since
one value that UTF-8 cannot encode fails the export of its whole batch. The exceptions are :func:`start_cleaned`
and :meth:`SpanScope.set_cleaned`, for a caller whose values are cleaned already (a call's labels, built and
cleaned once per call site; its response attributes, cleaned as they are built).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from nons.base.errors import LayerFailedError, OutputParseError, error_type_of, message_of
from nons.base.redaction import clean, clean_attributes
from nons.base.results import LLMCallRecord
from nons.observability import names
from nons.observability.content import capture_mode

__all__ = ["NO_SPAN", "SpanScope", "rollup_attributes", "start", "start_cleaned", "truncate_content"]

_CONTENT_LIMIT = 4096


class SpanScope:
    """A started span: ``with scope:`` makes it current, the methods fail, roll up and end it.

    Entering never ends the span and never records the exception leaving the block: each caller decides how its
    span fails (a node fails with its recorded error, an agent with its final result), then ends it. This is
    what ``trace.use_span(span, record_exception=False, set_status_on_exception=False)`` does, without the
    generator-based context manager it allocates on every use.
    """

    __slots__ = ("_token", "span")

    #: Whether this scope has a span (tracing is on); ``False`` only for :data:`NO_SPAN`.
    tracing = True

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> SpanScope:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))  # make_current(), without the call
        return self

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]

    def make_current(self) -> object:
        """Make the span current until :meth:`restore` is given the returned token: ``with scope:`` by hand, for
        a caller that makes it current only when there is a span (:data:`NO_SPAN` needs nothing)."""
        return otel_context.attach(trace.set_span_in_context(self.span))

    def restore(self, token: object) -> None:
        """Make current again what was before :meth:`make_current` returned ``token``."""
        otel_context.detach(token)  # type: ignore[arg-type]

    def context(self) -> otel_context.Context | None:
        """The current context with this span in it: for a measurement made once the span is no longer current
        (its duration, recorded as it ends), so that its exemplar still points at the span."""
        return trace.set_span_in_context(self.span)

    def set(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes at once (one lock and one validation pass, unlike one call per attribute)."""
        self.span.set_attributes(clean_attributes(attributes))

    def set_cleaned(self, attributes: Mapping[str, Any]) -> None:
        """:meth:`set` for attributes whose strings the caller has cleaned already."""
        self.span.set_attributes(attributes)

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """Add the event ``name`` with ``attributes``."""
        self.span.add_event(clean(name), clean_attributes(attributes))

    def rename(self, name: str) -> None:
        """Name the span ``name`` (cleaned by the caller) from now on."""
        self.span.update_name(name)

    def fail(self, error: BaseException, description: str | None = None) -> None:
        """Mark the span failed by ``error``: ``error.type`` is its ``error_type`` (else its class name), and
        the status description is ``description`` (default: the error's message). A message that quotes a
        model's answer (an :class:`~nons.base.errors.OutputParseError`, or a failure caused by one) is recorded
        without it unless content capture is on: the answer is content, which telemetry leaves out."""
        error_type = error_type_of(error)  # "cancelled" for a cancellation, as its nodes' and calls' errors say
        if description is None:
            # A cancellation has no message (nor has `raise ValueError()`): an empty description says nothing.
            description = message_of(error) or type(error).__name__
        if _quotes_an_answer(error):
            description = _withheld(error_type) or description
        self._mark(error_type, description)

    def fail_as(self, error_type: str, description: str | None) -> None:
        """Mark the span failed without an exception: status ERROR with ``description``, and ``error_type``. An
        ``output_parse_error``'s description, which may quote the answer, is left out as :meth:`fail` does."""
        if error_type == _OUTPUT_PARSE:
            description = _withheld(error_type) or description
        self._mark(error_type, description)

    def _mark(self, error_type: str, description: str | None) -> None:
        self.span.set_attribute(names.ERROR_TYPE, clean(error_type))
        self.span.set_status(Status(StatusCode.ERROR, None if description is None else clean(description)))

    def roll_up(self, calls: Iterable[LLMCallRecord], extra: Mapping[str, Any] | None = None) -> None:
        """Set the cost and token roll-ups over ``calls`` (see :func:`rollup_attributes`), and ``extra``."""
        attributes = rollup_attributes(calls)
        if extra:
            attributes.update(clean_attributes(extra))
        self.span.set_attributes(attributes)

    def end(self) -> None:
        self.span.end()

    @property
    def trace_id(self) -> str | None:
        """The span's trace id in hex, or ``None`` when the span is not part of a valid trace."""
        context = self.span.get_span_context()
        return trace.format_trace_id(context.trace_id) if context.is_valid else None


_OUTPUT_PARSE = OutputParseError.error_type


def _withheld(error_type: str) -> str | None:
    """The status description of a failure whose message may quote a model's answer, while content capture is off
    (``None`` while it is on: the message may be recorded as it is)."""
    if capture_mode().span:
        return None
    return (
        f"{error_type}: a model's answer could not be used as the operator's output (the answer is not recorded: "
        f"set {names.ENV_CAPTURE_CONTENT} to record content)"
    )


def _quotes_an_answer(error: BaseException) -> bool:
    """Whether ``error``'s message may quote a model's answer: it is an OutputParseError, or one caused it
    (through a node's or a layer's failure, or an exception's cause)."""
    pending, seen = [error], 0
    while pending and seen < 32:  # a chain, not a tree worth walking further
        current = pending.pop()
        seen += 1
        if isinstance(current, OutputParseError):
            return True
        pending += [e for e in (getattr(current, "cause", None), current.__cause__) if isinstance(e, BaseException)]
        if isinstance(current, LayerFailedError):
            pending += current.failures
    return False


class _NoSpan(SpanScope):
    """The scope of every span when tracing is off: each method does nothing."""

    __slots__ = ()
    tracing = False

    def __enter__(self) -> SpanScope:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def make_current(self) -> object:
        return None

    def restore(self, token: object) -> None:
        pass

    def context(self) -> otel_context.Context | None:
        return None  # the measurement takes the current context, as without a span it would

    def set(self, attributes: Mapping[str, Any]) -> None:
        pass

    def set_cleaned(self, attributes: Mapping[str, Any]) -> None:
        pass

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        pass

    def rename(self, name: str) -> None:
        pass

    def fail(self, error: BaseException, description: str | None = None) -> None:
        pass

    def fail_as(self, error_type: str, description: str | None) -> None:
        pass

    def roll_up(self, calls: Iterable[LLMCallRecord], extra: Mapping[str, Any] | None = None) -> None:
        pass

    def end(self) -> None:
        pass

    @property
    def trace_id(self) -> str | None:
        return None


#: The shared scope of every span when tracing is off.
NO_SPAN: SpanScope = _NoSpan(trace.INVALID_SPAN)


def start(
    tracer: trace.Tracer, name: str, attributes: Mapping[str, Any], kind: SpanKind = SpanKind.INTERNAL
) -> SpanScope:
    """Start a span (not yet current) as a child of the current one; enter the scope to make it current."""
    return SpanScope(tracer.start_span(clean(name), kind=kind, attributes=clean_attributes(attributes)))


def start_cleaned(
    tracer: trace.Tracer, name: str, attributes: Mapping[str, Any], kind: SpanKind = SpanKind.INTERNAL
) -> SpanScope:
    """:func:`start` for a name and attributes the caller has cleaned already (built once and kept, as a call
    site's labels are)."""
    return SpanScope(tracer.start_span(name, kind=kind, attributes=attributes))


def rollup_attributes(calls: Iterable[LLMCallRecord]) -> dict[str, Any]:
    """The cost and token roll-ups of a node, network or agent span over ``calls``.

    Named ``nons.*``, apart from the LLM spans' ``gen_ai.usage.*``, so that summing ``gen_ai.usage.cost`` over
    all spans never double counts. An unknown cost adds nothing to the sum and is counted apart, never as zero;
    so are unknown token counts.
    """
    # One loop over the records, not known_cost(), total_usage() and unpriced() in turn: every span with calls
    # under it rolls them up, and total_usage() makes a Usage per record.
    cost, input_tokens, output_tokens, count, missing, unreported = 0.0, 0, 0, 0, 0, 0
    for record in calls:
        count += 1
        usage = record.usage
        input_tokens += usage.input_tokens
        output_tokens += usage.output_tokens
        if not usage.reported:
            unreported += 1
        if record.cost_usd is None:
            missing += 1
            cost += record.known_part_usd
        else:
            cost += record.cost_usd
    attributes: dict[str, Any] = {
        names.ROLLUP_COST: cost,
        names.ROLLUP_INPUT_TOKENS: input_tokens,
        names.ROLLUP_OUTPUT_TOKENS: output_tokens,
        names.ROLLUP_LLM_CALLS: count,
    }
    if missing:
        attributes[names.ROLLUP_UNPRICED_CALLS] = missing
    if unreported:  # their tokens are unknown: the counts above leave them out
        attributes[names.ROLLUP_USAGE_UNREPORTED_CALLS] = unreported
    return attributes


def truncate_content(text: str) -> str:
    """Captured prompt, completion or tool text, cut to a size a span attribute should carry."""
    return text if len(text) <= _CONTENT_LIMIT else text[:_CONTENT_LIMIT] + "…[truncated]"
