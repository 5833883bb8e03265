"""NoN checks the ``OTEL_*`` variables only for what it builds itself (the README's guest section).

A tracing-only application (its own tracer provider, no meter provider) gets NoN's meter provider, and nothing
of NoN's reads its trace exporter's, sampler's or span processor's variables: they are the application's, and
are never a reason to refuse a pass. What NoN does build (the exporters an OTLP endpoint makes it build for
metrics and logs) is still checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nons.base.errors import ConfigurationError
from nons.observability.otel_env import check_otel_environment

#: An application with its own tracer provider (spans kept in memory) and no meter provider, running two passes;
#: it prints how many of NoN's pass spans reached its provider, or why the pass was refused.
TRACING_ONLY_APP = """
import asyncio, os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
from nons import ConfigurationError, ModelConfig, ModelProvider, NoN, Node
network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])
os.environ.update(dict(pair.split("=", 1) for pair in sys.argv[1:]))
try:
    for _ in range(2):
        asyncio.run(network.run("q"))
except ConfigurationError as error:
    print("refused:", error)
else:
    print("passes:", sum(s.name == "invoke_workflow network" for s in spans.get_finished_spans()))
"""


def tracing_only_app(*variables: str) -> str:
    """What :data:`TRACING_ONLY_APP` prints with ``variables`` (``NAME=value``) set before its first pass."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    completed = subprocess.run(
        [sys.executable, "-c", TRACING_ONLY_APP, *variables],
        env={**clean, "PYTHONPATH": str(Path(__file__).parents[2])}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "variable",
    [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json",  # the application's trace exporter speaks JSON
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",  # no OTLP endpoint: NoN exports no metrics, reads no protocol
        "OTEL_BSP_MAX_QUEUE_SIZE=0",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=abc",
        "OTEL_TRACES_SAMPLER=xray",  # a sampler the application's own set-up provides
        "OTEL_EXPORTER_PROMETHEUS_PORT=99999",  # NoN builds no Prometheus exporter (no OTEL_METRICS_EXPORTER)
    ],
)
def test_a_tracing_only_applications_own_trace_variables_never_refuse_a_pass(variable: str) -> None:
    assert tracing_only_app(variable) == "passes: 2"


def test_the_exporters_nons_builds_beside_a_tracing_only_application_are_still_checked() -> None:
    # With an OTLP endpoint, NoN exports metrics and logs itself: the general protocol is the one they would use.
    answer = tracing_only_app("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json")
    assert answer.startswith("refused:") and "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'" in answer
    answer = tracing_only_app("OTEL_METRICS_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=abc")
    assert answer.startswith("refused:") and "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT='abc'" in answer


def test_a_general_protocol_that_no_exporter_of_nons_reads_is_not_refused() -> None:
    # NoN's metric exporter reads its own protocol variable, its log exporter is off: the general protocol is
    # read only by the application's trace exporter.
    answer = tracing_only_app(
        "OTEL_METRICS_EXPORTER=otlp",
        "OTEL_LOGS_EXPORTER=none",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf",
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/json",
    )
    assert answer == "passes: 2"


def test_an_unknown_sampler_is_refused_naming_each_accepted_sampler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "xray")
    with pytest.raises(ConfigurationError) as refused:
        check_otel_environment({"TRACES": ["otlp"]})
    accepted = str(refused.value).split("is not one of ", 1)[1].split(", ")
    assert "parentbased_always_on" in accepted and "traceidratio" in accepted
    assert len(accepted) == len(set(accepted)), accepted


#: A tracing-only application of service "my-app" that exports its spans over OTLP, and records a metric of its
#: own through the global API (which NoN's meter provider then serves).
TRACING_ONLY_SERVICE = """
import asyncio
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
provider = TracerProvider(resource=Resource.create({"service.name": "my-app"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
requests = metrics.get_meter("my.app").create_counter("myapp.requests")
from nons import ModelConfig, ModelProvider, NoN, Node, shutdown_telemetry
asyncio.run(NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))]).run("q"))
requests.add(1)
shutdown_telemetry()
provider.shutdown()
"""


def test_what_nons_installs_beside_a_tracing_only_application_describes_the_same_service() -> None:
    # NoN's meter provider was built from the variables alone: NoN's metrics, and the application's own through
    # it, said service.name "nons" while the application's spans said "my-app" (two services on the dashboards).
    from otlp_receiver import OTLPReceiver

    with OTLPReceiver() as receiver:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
        env = {
            **clean, "PYTHONPATH": str(Path(__file__).parents[2]),
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "NON_ENVIRONMENT": "production",
        }  # fmt: skip
        completed = subprocess.run(
            [sys.executable, "-c", TRACING_ONLY_SERVICE], env=env, capture_output=True, text=True, timeout=120
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        receiver.wait_for(lambda r: any(m.name == "myapp.requests" for _, _, m in r.metrics()), timeout=10)
        services = {(resource.get("service.name"), scope) for resource, scope, _ in receiver.metrics()}
        assert services == {("my-app", "nons"), ("my-app", "my.app")}
        # NON_ENVIRONMENT still names the environment, where the application's resource says none.
        environments = {resource.get("deployment.environment.name") for resource, _, _ in receiver.metrics()}
        assert environments == {"production"}
        assert {resource.get("service.name") for resource, _, _ in receiver.spans()} == {"my-app"}


def test_the_prometheus_exporters_port_is_checked_only_when_nons_builds_that_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bad port failed every pass of a process whose metrics went over OTLP, or nowhere.
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "9464x")
    check_otel_environment({"METRICS": ["otlp"]})
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_PROMETHEUS_PORT='9464x'"):
        check_otel_environment({"METRICS": ["otlp", "prometheus"]})
