"""``configure_telemetry()``: the resource, providers it installs (or keeps), the bounded in-process buffer,
and the deployment guide's snippets on a fresh process.

Installing providers is once per process, so every ``configure_telemetry()`` case runs in a subprocess
(``telemetry_child.py``); ``build_resource()`` reads the environment on each call and is checked in-process.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from otel_harness import run_child, run_script

import nons
from nons.observability.otel_providers import _not_about_export
from nons.observability.setup import build_resource


def test_resource_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "NON_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    attributes = build_resource().attributes
    assert attributes["service.name"] == "nons"
    assert attributes["service.version"] == nons.__version__
    assert attributes["deployment.environment.name"] == "development"


def test_resource_from_the_standard_and_non_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "answers-api")
    monkeypatch.setenv("NON_ENVIRONMENT", "staging")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=llm-platform,service.namespace=qa")
    attributes = build_resource().attributes
    assert attributes["service.name"] == "answers-api"
    assert attributes["deployment.environment.name"] == "staging"
    assert attributes["service.version"] == nons.__version__
    assert (attributes["team"], attributes["service.namespace"]) == ("llm-platform", "qa")


def test_the_older_environment_key_names_the_environment_under_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A platform still on the older conventions set deployment.environment=staging; the resource said both
    # staging and (NON_ENVIRONMENT's default) development, and the dashboards read development.
    monkeypatch.delenv("NON_ENVIRONMENT", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    attributes = build_resource().attributes
    assert (attributes["deployment.environment"], attributes["deployment.environment.name"]) == ("staging", "staging")
    # The current key, when given too, is the one that counts.
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,deployment.environment.name=prod")
    assert build_resource().attributes["deployment.environment.name"] == "prod"


def test_otel_resource_attributes_win_over_nons_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("NON_ENVIRONMENT", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment.name=prod")
    attributes = build_resource().attributes
    assert attributes["service.name"] == "from-attributes"
    assert attributes["deployment.environment.name"] == "prod"
    # OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES, as the specification says.
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-service-name")
    assert build_resource().attributes["service.name"] == "from-service-name"


def test_the_log_bridge_keeps_the_exporters_own_records_out() -> None:
    def record(name: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, "message", None, None)

    assert _not_about_export(record("answers.api"))
    assert not _not_about_export(record("opentelemetry.exporter.otlp.proto.grpc.exporter"))
    with suppress_instrumentation():  # what the SDK's export threads run under
        assert not _not_about_export(record("grpc._channel"))


@pytest.fixture(scope="module")
def fresh_process() -> dict[str, Any]:
    return run_child(
        "setup",
        {
            "OTEL_SERVICE_NAME": "setup-test",
            "NON_ENVIRONMENT": "qa",
            "OTEL_RESOURCE_ATTRIBUTES": "team=llm-platform",
            "NON_OBSERVABILITY_BUFFER_SIZE": "20",
        },
    )


def test_configure_telemetry_installs_sdk_providers_with_the_resource(fresh_process: dict[str, Any]) -> None:
    # Traces and metrics are installed (no log exporter is configured, so no log provider).
    assert fresh_process["installed"] == [True, True, False]
    assert fresh_process["idempotent"] is True
    for resource in (fresh_process["tracer_resource"], fresh_process["meter_resource"]):
        assert resource["service.name"] == "setup-test"
        assert resource["service.version"] == nons.__version__
        assert resource["deployment.environment.name"] == "qa"
        assert resource["team"] == "llm-platform"


def test_the_buffer_is_a_ring_of_non_observability_buffer_size_spans(fresh_process: dict[str, Any]) -> None:
    stats = fresh_process["stats"]
    # 10 passes of 9 spans (pass, 2 layers, 3 nodes, 3 LLM calls) into a ring of 20.
    assert stats["buffer_size"] == 20
    assert stats["spans_seen"] == 90
    assert stats["spans_buffered"] == 20
    assert stats["spans_dropped"] == 70
    assert fresh_process["buffered_spans"] == 20
    assert {"trace_id", "span_id", "operation_name", "duration_ms", "success", "cost_usd"} <= set(
        fresh_process["span_keys"]
    )


def test_the_last_trace_is_summarised_from_the_ring(fresh_process: dict[str, Any]) -> None:
    summary = fresh_process["last_summary"]
    assert summary["trace_id"] == fresh_process["last_trace_id"]
    assert summary["span_count"] == 9
    assert summary["success"] is True
    assert math.isclose(summary["total_cost_usd"], fresh_process["last_cost"], rel_tol=1e-12)


def test_the_guides_snippets_run_on_a_fresh_process(fresh_process: dict[str, Any]) -> None:
    lines = fresh_process["guide_monitoring_output"].splitlines()
    assert lines[0] == "Total spans: 20"
    assert lines[1].startswith("Total cost: $")
    assert math.isclose(float(lines[1].split("$")[1]), fresh_process["buffered_cost"], abs_tol=1e-6)
    assert lines[2] == "Success rate: 1.0"
    costs = fresh_process["guide_costs"]
    assert costs["total_requests"] == 20
    assert math.isclose(costs["total_cost_usd"], fresh_process["buffered_cost"], rel_tol=1e-12)
    assert math.isclose(costs["avg_cost_per_request"], costs["total_cost_usd"] / 20, rel_tol=1e-12)


@pytest.mark.parametrize(
    "variable, value", [("OTEL_LOGS_EXPORTER", "bogus"), ("OTEL_TRACES_EXPORTER", "otlp,jaeger")]
)
def test_an_unknown_exporter_is_refused_before_anything_is_installed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from nons.base.errors import ConfigurationError
    from nons.observability.exporters import check_exporter_names

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"{variable}=.*unknown exporter"):
        check_exporter_names()


@pytest.mark.parametrize("bridge", ["", "nons", "root"])
def test_nons_warnings_still_reach_stderr_when_the_application_configured_no_logging(bridge: str) -> None:
    # With the buffer's handler alone, and with the OTLP log bridge on NoN's loggers or on the root logger.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if bridge:
        env.update(OTEL_LOGS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
                   OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", NON_TELEMETRY_EXIT_TIMEOUT="0.2")
    if bridge == "root":
        env["OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"] = "true"
    code = (
        "import logging\n"
        "from nons.observability.setup import configure_telemetry\n"
        "handle = configure_telemetry()\n"
        "print(len(handle.log_bridges), len(logging.getLogger().handlers))\n"
        "logging.getLogger('nons.example').warning('this warning must be seen')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert completed.stdout.split() == [
        "1" if bridge else "0", "1" if bridge == "root" else "0"
    ]
    assert completed.stderr.count("this warning must be seen") == 1


@pytest.mark.parametrize("later_name", ["ahead", "changed-after-preload"])
def test_the_resource_built_ahead_is_used_only_while_its_variables_are_unchanged(later_name: str) -> None:
    # preload() builds the resource on a worker thread at the first pass; configure_telemetry() runs right after
    # on the loop's thread and must still describe the process as the variables say then.
    script = (
        "import json, os\n"
        "from nons.observability import setup\n"
        "setup.preload()\n"
        f"os.environ['OTEL_SERVICE_NAME'] = {later_name!r}\n"
        "handle = setup.configure_telemetry()\n"
        "print(json.dumps(handle.resource.attributes['service.name']))\n"
        "setup.shutdown_telemetry()\n"
    )
    assert run_script(script, {"OTEL_SERVICE_NAME": "ahead"}) == f'"{later_name}"'


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_the_preload_builds_a_resource_of_its_own() -> None:
    # The SDK's detectors give each process its own service.instance.id: a child must not report its parent's.
    script = (
        "import os\n"
        "from nons.observability import setup\n"
        "setup.preload()\n"
        "ahead = setup._resource[1]\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    handle = setup.configure_telemetry()\n"
        "    os._exit(0 if handle.resource is not ahead else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert run_script(script, {}) == "0", "the child built its own resource"


@pytest.mark.parametrize(("tracing", "metrics"), [("false", "true"), ("true", "false"), ("false", "false")])
def test_each_switch_alone_keeps_its_signal_exported_at_the_first_pass(tracing: str, metrics: str) -> None:
    """NON_ENABLE_TRACING=false turns spans off, not the metrics' export (and the other way round); with both
    off, nothing is set up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    env.update(NON_ENABLE_TRACING=tracing, NON_ENABLE_METRICS=metrics, OTEL_TRACES_EXPORTER="console",
               OTEL_METRICS_EXPORTER="console", OTEL_LOGS_EXPORTER="none")  # fmt: skip
    code = (
        "import asyncio\n"
        "from nons import ModelConfig, ModelProvider, NoN, Node, shutdown_telemetry\n"
        "from nons.observability.setup import telemetry_is_configured\n"
        "model = ModelConfig(provider=ModelProvider.MOCK, model_name='gpt-4o-mini')\n"  # simulated, priced
        "asyncio.run(NoN.from_operators([Node('generate', model)]).run('q'))\n"
        "print('configured', telemetry_is_configured())\n"
        "shutdown_telemetry()\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    out = completed.stdout
    assert f"configured {tracing == 'true' or metrics == 'true'}" in out
    assert ('"name": "nons.cost"' in out) == (metrics == "true")
    assert ('"name": "invoke_workflow' in out) == (tracing == "true")
