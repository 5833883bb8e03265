"""The observability tests' harness: session SDK providers, fixtures and a child-process runner.

Test modules import its classes from here, not from ``conftest`` (a module name every test folder has);
``conftest.py`` only re-exports the fixtures.

The OpenTelemetry API lets a process set its global tracer and meter providers once. So the session installs
SDK providers the way an application would (or reuses SDK providers that something earlier in the process
installed, found through ``trace.get_tracer_provider()``), adds an in-memory span exporter to it, and each test
gets that exporter emptied plus a fresh in-memory metric reader of its own (``MeterProvider.add_metric_reader``),
removed again at the end, so metric sums start from zero in every test.

Whatever needs ``configure_telemetry()`` to install the globals itself (resource, exporters over the wire,
resilience, memory) runs in a subprocess: see :func:`run_child`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# NoN's own bounded in-memory log exporter: the SDK's InMemoryLogRecordExporter has that name from SDK 1.39 only,
# and these tests also run against the oldest supported SDK (.ci/run).
from nons.observability.buffer import LogRing, ReadableLogRecord
from nons.observability.deferred import record_pending
from nons.observability.setup import build_resource

HERE = Path(__file__).parent

#: The OpenTelemetry SDK's (major, minor): the suite also runs against the oldest supported one (.ci/run).
SDK_VERSION = tuple(int(part) for part in importlib.metadata.version("opentelemetry-sdk").split(".")[:2])
#: What the OTLP exporters and batch processors of older SDKs do not do, which some checks rely on.
needs_sdk_1_41 = pytest.mark.skipif(
    SDK_VERSION < (1, 41),
    reason="SDK < 1.41: batch processors have no drop hook (drops go uncounted) and the OTLP exporters retry a "
    "refused export for up to 64 s before reporting it failed",
)
#: The contrib google-genai instrumentation (the double-counting tests) needs opentelemetry-api 1.43 or later.
needs_sdk_1_43 = pytest.mark.skipif(
    SDK_VERSION < (1, 43),
    reason="SDK < 1.43: the contrib opentelemetry-instrumentation-google-genai cannot be installed beside it",
)
#: Whether the installed opentelemetry-instrumentation-httpx has HTTPX2ClientInstrumentor (HTTP attempt spans).
HAS_HTTPX2_INSTRUMENTOR = hasattr(
    importlib.import_module("opentelemetry.instrumentation.httpx"), "HTTPX2ClientInstrumentor"
)
CHILD = HERE / "telemetry_child.py"


def require_fastotel() -> None:
    """Skip without fastotel (``nons[fastotel]``, in the test extra; Python 3.11 or later), with the reason; fail
    under ``CI=true`` on Python 3.11 or later, where the test extra always installs it."""
    try:
        importlib.import_module("fastotel")
    except ImportError:
        if os.environ.get("CI", "").lower() == "true" and sys.version_info >= (3, 11):
            pytest.fail("fastotel is not installed, and CI must test NON_SPAN_EXPORT=fastotel")
        pytest.skip("fastotel is not installed (pip install 'nons[fastotel]'): NON_SPAN_EXPORT=fastotel untested")

@dataclass
class SessionSDK:
    """The process's SDK providers and the session's span exporter."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporter: InMemorySpanExporter


@pytest.fixture(scope="session")
def sdk() -> SessionSDK:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        tracer_provider = current
    else:
        tracer_provider = TracerProvider(resource=build_resource())
        trace.set_tracer_provider(tracer_provider)
        if trace.get_tracer_provider() is not tracer_provider:
            pytest.skip("a non-SDK tracer provider is installed in this process")
    exporter = InMemorySpanExporter()
    # Simple (synchronous) processing: a span is in the exporter as soon as it ends, no flush needed.
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    current_meter = metrics.get_meter_provider()
    if isinstance(current_meter, MeterProvider):
        meter_provider = current_meter
    else:
        meter_provider = MeterProvider(resource=build_resource())
        metrics.set_meter_provider(meter_provider)
        if metrics.get_meter_provider() is not meter_provider:
            pytest.skip("a non-SDK meter provider is installed in this process")
    return SessionSDK(tracer_provider, meter_provider, exporter)


@dataclass
class Telemetry:
    """What one test recorded: its spans, and its metrics from a reader registered for this test only."""

    span_exporter: InMemorySpanExporter
    #: None on an SDK whose MeterProvider cannot add a reader later (before 1.3x): metric checks skip there.
    metric_reader: InMemoryMetricReader | None

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def spans_of_trace(self, trace_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if trace.format_trace_id(s.context.trace_id) == trace_id]

    def collect(self) -> dict[str, list[Any]]:
        """One collection: the data points of every metric, by name. Values are cumulative since the test
        started; exemplars are those offered since the previous collection (the SDK resets its reservoirs)."""
        if self.metric_reader is None:
            pytest.skip("this OpenTelemetry SDK's MeterProvider has no add_metric_reader (the oldest-SDK stage)")
        data = self.metric_reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def metric_points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (cumulative since the test started)."""
        return self.collect().get(name, [])

    def metric_names(self) -> set[str]:
        return set(self.collect())

    def counter_total(self, name: str) -> float:
        return float(sum(p.value for p in self.metric_points(name)))

    def histogram_sum(self, name: str, **attributes: Any) -> float:
        return float(
            sum(p.sum for p in self.metric_points(name) if all(p.attributes.get(k) == v for k, v in attributes.items()))
        )


@pytest.fixture
def otel(sdk: SessionSDK) -> Iterator[Telemetry]:
    sdk.span_exporter.clear()
    if not hasattr(sdk.meter_provider, "add_metric_reader"):
        yield Telemetry(sdk.span_exporter, None)
        sdk.span_exporter.clear()
        return
    # NoN's measurements wait in a queue until a reader collects or the loop's timer records them: what earlier
    # tests left there is recorded before this test's reader is added, and this test's before it is removed.
    record_pending()
    reader = InMemoryMetricReader()
    sdk.meter_provider.add_metric_reader(reader)
    try:
        yield Telemetry(sdk.span_exporter, reader)
    finally:
        record_pending()
        sdk.meter_provider.remove_metric_reader(reader)
        sdk.span_exporter.clear()


@dataclass
class LogCapture:
    """OTel log records bridged from Python logging (the root logger) during one test."""

    exporter: LogRing

    def records(self) -> list[ReadableLogRecord]:
        return list(self.exporter.get_finished_logs())


@pytest.fixture
def otel_logs() -> Iterator[LogCapture]:
    """Python logging bridged to OTel logs, as ``configure_telemetry`` does with a log exporter: the SDK's
    ``LoggingHandler`` on the root logger, here with an in-memory exporter (and no global logger provider)."""
    provider = LoggerProvider(resource=build_resource())
    exporter = LogRing(10_000)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield LogCapture(exporter)
    finally:
        root.removeHandler(handler)
        provider.shutdown()


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """A copy of this process's environment without its ``OTEL_*`` and ``NON_*`` variables, with ``env`` added:
    a child process gets only the telemetry settings its test gives it."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}, **env}


def run_script(script: str, env: dict[str, str]) -> str:
    """Run ``script`` in a fresh interpreter under :func:`clean_env` (exporters off unless ``env`` says
    otherwise), require it to succeed, and return the last line it printed."""
    exporters_off = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    completed = subprocess.run(
        [sys.executable, "-c", script], env=clean_env({**exporters_off, **env}), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.splitlines()[-1]


def run_child(scenario: str, env: dict[str, str], *, timeout: float = 90.0) -> dict[str, Any]:
    """Run ``telemetry_child.py scenario`` in a fresh interpreter (its own OTel globals) and return the JSON
    object it prints last. ``env`` is added to a copy of this process's environment without ``OTEL_*``."""
    child_env = clean_env(env)
    child_env.setdefault("PYTHONPATH", str(HERE))
    completed = subprocess.run(
        [sys.executable, str(CHILD), scenario],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"child {scenario!r} exited with {completed.returncode}\n"
            f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-4000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert lines, f"child {scenario!r} printed no result\nstderr:\n{completed.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["_stderr"] = completed.stderr
    return result
