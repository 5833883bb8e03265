"""NoN as a guest in an application that has its own OpenTelemetry setup, logging and HTTP clients: telemetry
sets itself up at the first pass, uses the application's providers, and touches nothing else of the
application's. Each case runs ``host_child.py`` in a fresh interpreter that never calls ``configure_telemetry``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from telemetry_child import GUIDE_MONITORING

HERE = Path(__file__).parent
needs_httpx2 = pytest.mark.skipif(
    not hasattr(__import__("opentelemetry.instrumentation.httpx", fromlist=["_"]), "HTTPX2ClientInstrumentor"),
    reason="this opentelemetry-instrumentation-httpx predates HTTPX2ClientInstrumentor: no HTTP attempt spans",
)
CHILD = HERE / "host_child.py"

#: The deployment guide's "Monitoring and Observability" snippet, quoted verbatim (the guide's section 1).
GUIDE_SNIPPET = '''
from nons.observability.integration import get_observability

# Get observability data
obs = get_observability()
data = obs.export_all_data()

# Monitor key metrics
print(f"Total spans: {len(data['spans'])}")
print(f"Total cost: ${sum(s.get('cost_usd', 0) for s in data['spans']):.6f}")
print(f"Success rate: {sum(1 for s in data['spans'] if s.get('success', False)) / len(data['spans'])}")
'''


def run_host(scenario: str, env: dict[str, str] | None = None, *, command: list[str] | None = None) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    completed = subprocess.run(
        [*(command or [sys.executable]), str(CHILD), scenario],
        env={**clean, "PYTHONPATH": str(HERE), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    result["_stderr"] = completed.stderr
    return result


def run_script(script: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by ``python -c`` (after ``options``) in a fresh interpreter, with no OTEL_* or NON_*
    variables but this checkout's NoN on the path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    return subprocess.run(
        [sys.executable, *options, "-c", script], env={**clean, "PYTHONPATH": str(HERE.parents[1])},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def app_exporting_to(out: Path) -> str:
    """The start of a script: an application whose own tracer provider batches spans (for 30 s, so nothing is
    sent unless flushed) to a file exporter writing each span's name to ``out``, which it does not shut down at
    exit; then one NoN pass."""
    return (
        "import asyncio\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult\n"
        "class ToFile(SpanExporter):\n"
        "    def export(self, spans):\n"
        f"        with open({str(out)!r}, 'a') as f: f.writelines(s.name + '\\n' for s in spans)\n"
        "        return SpanExportResult.SUCCESS\n"
        "provider = TracerProvider(shutdown_on_exit=False)\n"
        "provider.add_span_processor(BatchSpanProcessor(ToFile(), schedule_delay_millis=30000))\n"
        "trace.set_tracer_provider(provider)\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        "asyncio.run(NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))]).run('q'))\n"
    )


@pytest.fixture(scope="module")
def host() -> dict[str, Any]:
    return run_host("host")


def test_nons_spans_reach_the_applications_exporter_under_its_request_span(host: dict[str, Any]) -> None:
    assert host["same_providers"] == [True, True]
    app_spans = [tuple(s) for s in host["app_spans"]]
    assert ("invoke_workflow network", "nons") in app_spans
    assert ("GET /users/{id}", "the-application") in app_spans
    assert host["trace_id"]


def test_the_applications_spans_are_not_in_nons_buffer(host: dict[str, Any]) -> None:
    assert "GET /users/{id}" not in host["buffer_span_names"]
    assert sorted(set(host["buffer_span_names"])) == [
        "chat gpt-4o-mini", "invoke_workflow network", "nons.layer 0", "nons.layer 1", "nons.node generate",
    ]
    # The buffer still has metrics: built from NoN's spans, not read from the application's provider.
    assert {"gen_ai.client.token.usage", "nons.cost", "nons.node.duration"} <= set(host["buffer_metric_names"])


def test_the_applications_meter_provider_keeps_only_its_own_readers(host: dict[str, Any]) -> None:
    # (No other metric reader exists in the process at all.)
    assert host["meter_readers_are_the_apps"] is True


@needs_httpx2
def test_the_applications_http_clients_are_not_traced(host: dict[str, Any]) -> None:
    # The provider's attempt carries a trace context; the application's httpx and httpx2 requests do not,
    # and the only HTTP span is the provider's.
    assert host["traceparent_sent"] == [True, False, False]
    assert [name for name, scope in host["app_spans"] if scope == "opentelemetry.instrumentation.httpx"] == ["POST"]


def test_the_root_logger_gets_no_handler_from_nons(host: dict[str, Any]) -> None:
    assert host["root_handlers_unchanged"] is True
    # NoN's own records are buffered; the application's are not NoN's to keep.
    assert host["buffer_log_bodies"] == ["a warning of NoN's"]
    # The application's logging shows NoN's warning once (no second copy on stderr from NoN).
    assert host["_stderr"].count("a warning of NoN's") == 1
    assert "APP-LOG nons.example: a warning of NoN's" in host["_stderr"]


def test_the_guide_snippet_is_quoted_verbatim() -> None:
    assert GUIDE_SNIPPET == GUIDE_MONITORING
    guide_text = (Path(__file__).parents[3] / "shared" / "seed" / "NoN-deployment-guide.md")
    if guide_text.exists():  # the guide lives beside the repository, in the steering repo's shared/
        assert GUIDE_SNIPPET.strip() in guide_text.read_text()


def test_the_guides_monitoring_snippet_run_after_the_work_prints_real_figures() -> None:
    # No configure_telemetry(): the first pass set telemetry up, so the snippet sees the passes' spans.
    result = run_host("guide")
    assert all(result["trace_ids"])
    lines = result["output"].splitlines()
    assert lines[0] == "Total spans: 27" == f"Total spans: {result['buffered']}"  # 3 passes of 9 spans
    assert math.isclose(float(lines[1].removeprefix("Total cost: $")), sum(result["costs"]), abs_tol=1e-6)
    assert sum(result["costs"]) > 0
    assert lines[2] == "Success rate: 1.0"
    assert result["summary"]["trace_id"] == result["trace_ids"][-1]
    assert result["summary"]["span_count"] == 9


def test_nothing_sets_telemetry_up_again_after_shutdown() -> None:
    result = run_host("after_shutdown")
    assert result["configured_before"] is True
    assert result["configured_after_get"] is False
    assert result["configured_after_pass"] is False
    assert result["second_output"]


@needs_httpx2
@pytest.mark.skipif(shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent)) is None,
                    reason="opentelemetry-instrument is not installed beside this Python")
def test_under_opentelemetry_instrument_each_attempt_is_traced_once_with_the_standard_metric() -> None:
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    result = run_host(
        "instrumented",
        {
            # No exporters: the child (the application) installs providers and reads them itself.
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
        },
        command=[instrument, sys.executable],
    )
    spans = result["http_spans"]
    # Two attempts (a 500, then the answer), one span each, both children of the LLM span.
    assert [s["status"] for s in spans] == [500, 200]
    assert all(s["parent_is_chat"] for s in spans)
    assert all(s["url"].endswith("/v1/chat/completions") for s in spans)
    # The upstream instrumentation's own metric is recorded for the SDK's traffic.
    assert result["http_duration_count"] == 2


@pytest.mark.parametrize("configure", [False, True], ids=["first-pass", "configure_telemetry"])
def test_an_application_that_makes_deprecation_warnings_errors_still_runs_passes(configure: bool) -> None:
    """``python -W error::DeprecationWarning`` (as ``pytest -W error`` runs a test suite): NoN's telemetry set-up
    makes the SDK's log handler, which warns that it is deprecated since SDK 1.39; that must not fail the pass."""
    script = (
        "import asyncio, nons\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        f"if {configure}: nons.configure_telemetry()\n"
        "network = NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))])\n"
        "for _ in range(2): print(asyncio.run(network.run('q')).trace_id is not None)\n"
    )
    completed = run_script(script, "-W", "error::DeprecationWarning")
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.split() == ["True", "True"]


def test_nons_leaves_the_applications_providers_to_it_at_exit() -> None:
    """An application with its own tracer provider, whose exporter is stuck (a collector that accepts and never
    answers): after a NoN pass, NoN's exit handler flushes only the providers NoN installed (here the meter and
    logger providers); it neither waits on the application's exporter nor warns that spans were dropped (the
    application's own shutdown still sends them)."""
    script = (
        "import asyncio, socket\n"
        "hole = socket.socket(); hole.bind(('127.0.0.1', 0)); hole.listen(8)\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor\n"
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter\n"
        "url = f'http://127.0.0.1:{hole.getsockname()[1]}/v1/traces'\n"
        "provider = TracerProvider(shutdown_on_exit=False)\n"
        "provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=5)))\n"
        "trace.set_tracer_provider(provider)\n"
        "import nons\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        "network = NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))])\n"
        "asyncio.run(network.run('q'))\n"
        "handle = nons.configure_telemetry()  # the one the pass set up\n"
        "print(handle.tracer_provider is provider, handle.installed_tracing)\n"
    )
    completed = run_script(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.split() == ["True", "False"]
    assert "telemetry was not exported" not in completed.stderr


@pytest.mark.parametrize(
    "variable, value",
    [
        ("OTEL_TRACES_EXPORTER", "zipkin"),  # an exporter NoN does not build (opentelemetry-instrument does)
        ("OTEL_METRICS_EXPORTER", "otlp,otlp_proto_grpc,otlp_proto_http"),  # two OTLP protocols
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),  # a protocol the Python SDK has no exporter for
    ],
)
def test_the_applications_own_exporter_settings_are_not_nons_to_refuse(variable: str, value: str) -> None:
    """An application with its own tracer and meter providers (as ``opentelemetry-instrument`` sets them up) may
    name exporters and protocols NoN does not build: NoN exports nothing itself, so it refuses none of them, and
    its spans go to the application's provider."""
    script = (
        "import asyncio, os\n"
        f"os.environ[{variable!r}] = {value!r}\n"
        "from opentelemetry import metrics, trace\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "spans = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(spans))\n"
        "trace.set_tracer_provider(provider)\n"
        "metrics.set_meter_provider(MeterProvider())\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        "network = NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))])\n"
        "for _ in range(2): asyncio.run(network.run('q'))\n"
        "print(sum(s.name == 'invoke_workflow network' for s in spans.get_finished_spans()))\n"
    )
    completed = run_script(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.split() == ["2"]


def test_an_exporter_nons_would_build_is_still_refused_when_unknown() -> None:
    # No provider of the application's: NoN builds the exporter the variable names, so a name it does not know
    # fails the pass with an error that says what it does know.
    script = (
        "import asyncio, os\n"
        "os.environ['OTEL_TRACES_EXPORTER'] = 'zipkin'\n"
        "from nons import ConfigurationError, ModelConfig, ModelProvider, NoN, Node\n"
        "network = NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))])\n"
        "try:\n"
        "    asyncio.run(network.run('q'))\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
    )
    completed = run_script(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "OTEL_TRACES_EXPORTER='zipkin': unknown exporter(s) zipkin; use console, otlp" in completed.stdout


def test_sigterm_flushes_nons_spans_through_the_applications_own_provider(tmp_path: Path) -> None:
    """``docker stop``: SIGTERM ends the process without atexit, so neither the application's shutdown nor NoN's
    exit handler runs. NoN's SIGTERM handler flushes the application's tracer provider too (it stops nothing):
    the pass's spans, queued in the application's batch processor, are exported before the process ends."""
    out = tmp_path / "exported.txt"
    script = app_exporting_to(out) + "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
    completed = run_script(script)
    assert completed.returncode == -signal.SIGTERM, completed.stderr[-4000:]
    exported = out.read_text().split("\n") if out.exists() else []
    assert {"chat", "nons.node", "nons.layer", "invoke_workflow"} <= {name.split(" ")[0] for name in exported}


def test_an_application_that_ignores_sigterm_keeps_it_ignored_in_the_processes_it_starts() -> None:
    # NoN put its flushing handler in place of SIG_IGN: a handler is reset to the default in a child process,
    # where an ignored signal stays ignored, so every process the application started afterwards died on SIGTERM.
    script = (
        "import asyncio, signal, subprocess, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        "asyncio.run(NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))]).run('q'))\n"
        "assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN\n"
        "child = 'import os, signal; os.kill(os.getpid(), signal.SIGTERM); print(\"survived\")'\n"
        "done = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True)\n"
        "print(done.returncode, done.stdout.strip())\n"
    )
    completed = run_script(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip().splitlines()[-1] == "0 survived"


def test_with_the_sdk_disabled_nons_leaves_the_hosts_signals_and_threads_alone() -> None:
    # OTEL_SDK_DISABLED=true: nothing is recorded, yet NoN installed its SIGTERM handler and its flush thread.
    script = (
        "import asyncio, signal, threading\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node\n"
        "asyncio.run(NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))]).run('q'))\n"
        "print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,\n"
        "      any(t.name == 'nons-telemetry-flush' for t in threading.enumerate()))\n"
    )
    completed = run_script("import os; os.environ['OTEL_SDK_DISABLED'] = 'true'\n" + script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip().splitlines()[-1] == "True False"


def test_a_tracer_provider_that_wraps_the_sdks_is_said_to_keep_nons_spans_from_the_buffer() -> None:
    # A provider that is not the SDK's class (a vendor distribution's wrapper): NoN's spans go through it, the
    # buffer cannot see them, and its error blamed the sampler.
    script = (
        "import logging\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
        "class Wrapping(trace.TracerProvider):\n"
        "    def __init__(self, inner): self.inner = inner\n"
        "    def get_tracer(self, *args, **kwargs): return self.inner.get_tracer(*args, **kwargs)\n"
        "spans = InMemorySpanExporter(); inner = TracerProvider()\n"
        "inner.add_span_processor(SimpleSpanProcessor(spans)); trace.set_tracer_provider(Wrapping(inner))\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node, get_observability\n"
        "result = NoN.from_operators([Node('generate', ModelConfig(provider=ModelProvider.MOCK))]).run_sync('q')\n"
        "print(len(spans.get_finished_spans()))\n"
        "try:\n"
        "    get_observability().get_trace_summary(result.trace_id)\n"
        "except KeyError as error:\n"
        "    print(error)\n"
    )
    completed = run_script(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    count, error = completed.stdout.strip().splitlines()[-2:]
    assert int(count) >= 4  # the pass's spans reached the application's exporter
    assert "not an OpenTelemetry SDK TracerProvider" in error and "sampler" not in error
    assert "is not an OpenTelemetry SDK TracerProvider: NoN's spans go through it" in completed.stderr


def test_shutdown_telemetry_flushes_nons_spans_through_the_applications_own_provider(tmp_path: Path) -> None:
    """Asked for, ``shutdown_telemetry()`` flushes every provider NoN's spans go through (it stops only NoN's own):
    the README's "flushes everything". Only the exit handler leaves the application's to it."""
    out = tmp_path / "exported.txt"
    script = app_exporting_to(out) + (
        f"import nons\nprint(nons.shutdown_telemetry())\nprint(len(open({str(out)!r}).read().split()))\n"
    )
    completed = run_script(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    flushed, lines = completed.stdout.split()
    assert flushed == "True" and int(lines) >= 4
