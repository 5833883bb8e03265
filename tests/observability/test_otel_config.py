"""Malformed OTEL_* values: a ConfigurationError naming the variable and the value (and what is accepted), raised
before anything is installed; setup is all or nothing, and a failed setup can be retried once the value is
fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

# (variable, malformed value). Each used to crash setup with a bare ValueError/OverflowError naming no variable,
# or to be silently replaced (an unknown protocol selected HTTP/protobuf).
MALFORMED = [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "bogus"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grcp"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpcs"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc"),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-5"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "inf"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
    ("OTEL_BSP_SCHEDULE_DELAY", "abc"),
    ("OTEL_BLRP_SCHEDULE_DELAY", "0"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1"),
    ("OTEL_BLRP_MAX_QUEUE_SIZE", "-1"),
    ("OTEL_BLRP_EXPORT_TIMEOUT", "1.5x"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "abc"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "abc"),
    ("OTEL_EXPORTER_PROMETHEUS_PORT", "99999"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip"),
    ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "abc"),
    ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "-3"),
    ("OTEL_METRICS_EXEMPLAR_FILTER", "bogus"),
    ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes"),
    ("OTEL_TRACES_SAMPLER", "bogus"),
    ("OTEL_TRACES_SAMPLER_ARG", "2.5"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "notaurl"),
]

CHILD = textwrap.dedent(
    """
    import json, os, sys
    from nons.observability.setup import configure_telemetry, shutdown_telemetry

    variable, value, fixed_value = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ[variable] = value
    results = []
    for _ in range(2):  # the same bad value twice: both refused, nothing half-built in between
        try:
            handle = configure_telemetry()
            results.append({"ok": True, "installed": [handle.installed_tracing, handle.installed_metrics]})
        except BaseException as error:
            results.append({"ok": False, "type": type(error).__name__, "message": str(error)})
    if fixed_value:  # fixed: the retry installs everything
        os.environ[variable] = fixed_value
    else:
        del os.environ[variable]
    try:
        handle = configure_telemetry()
        results.append({"ok": True, "installed": [handle.installed_tracing, handle.installed_metrics,
                                                   handle.installed_logs]})
    except BaseException as error:
        results.append({"ok": False, "type": type(error).__name__, "message": str(error)})
    shutdown_telemetry(1000)
    print(json.dumps(results))
    """
)


def run(variable: str, value: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # nothing listens: nothing is exported
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp,prometheus" if "PROMETHEUS" in variable else "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
        }
    )
    # The fixed Prometheus port is any free one, not the default that another process may hold.
    fixed = "0" if variable == "OTEL_EXPORTER_PROMETHEUS_PORT" else ""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, variable, value, fixed], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.parametrize("variable, value", MALFORMED, ids=[f"{v}={x}" for v, x in MALFORMED])
def test_a_malformed_otel_value_is_refused_by_name_and_setup_can_be_retried(variable: str, value: str) -> None:
    first, second, fixed = run(variable, value)
    for attempt in (first, second):
        assert attempt["ok"] is False and attempt["type"] == "ConfigurationError", attempt
        assert variable in attempt["message"] and repr(value) in attempt["message"], attempt["message"]
    assert fixed == {"ok": True, "installed": [True, True, True]}, fixed


def test_the_accepted_protocols_are_named() -> None:
    (first, _, _) = run("OTEL_EXPORTER_OTLP_PROTOCOL", "grcp")
    assert "grpc" in first["message"] and "http/protobuf" in first["message"]


def test_a_malformed_header_list_is_refused_without_quoting_it() -> None:
    # Headers carry collector credentials: the error says where the list is malformed, not what it holds.
    (first, _, _) = run("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer s3cret,broken")
    assert first["ok"] is False and "OTEL_EXPORTER_OTLP_HEADERS" in first["message"]
    assert "s3cret" not in first["message"]
