"""The bundled collector turns an application's delta metrics into the cumulative series Prometheus and the
dashboards need, so its money and call counts reach ``:8889`` whole whichever temporality the SDK prefers.

An application whose own backend wants deltas sets ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta``,
and NoN's metrics go out that way too. The collector's prometheus exporter adds deltas up only while each
point's start is the previous point's end, and drops points otherwise ("Misaligned starting timestamps"): with
the SDK's deltas it dropped histogram points and cost increments. ``deltatocumulative`` in the metrics pipeline
adds them up first.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from otel_stack import http_get
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: Passes of a priced simulated model, a few metric exports apart, then the truth as one JSON line.
APPLICATION = """
import asyncio, json, time
from nons import ModelConfig, NoN, Node
from nons.observability import shutdown_telemetry

async def main() -> None:
    model = ModelConfig(provider="mock", model_name="gpt-4o-mini")
    network = NoN.from_operators([Node("generate", model_config=model) * 3])
    cost, calls = 0.0, 0
    for i in range(12):
        result = await network.run(f"question {i}")
        cost += result.cost_usd
        calls += len(result.calls)
        await asyncio.sleep(0.15)  # several exports (every 100 ms) over the run, each a delta of its own
    print(json.dumps({"cost_usd": cost, "calls": calls}))

asyncio.run(main())
shutdown_telemetry()
"""


def _run_application(collector: Any, service: str, temporality: str, workdir: Path) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_", "NONS_"))}
    env = base | {
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_endpoint("grpc"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "100",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": temporality,
    }
    done = subprocess.run(
        [sys.executable, "-c", APPLICATION], env=env, cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    truth: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return truth


def _exposed(collector: Any, service: str) -> dict[str, float]:
    """The service's cost and LLM call count on the collector's Prometheus endpoint, summed over their series."""
    status, body = http_get(f"http://127.0.0.1:{collector.ports['PROMETHEUS']}/metrics")
    assert status == 200, body[:500]
    totals = {"cost_usd": 0.0, "calls": 0.0}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.labels.get("service_name") != service:
                continue
            if sample.name == "nons_cost_USD_total":
                totals["cost_usd"] += sample.value
            elif sample.name == "gen_ai_client_operation_duration_seconds_count":
                totals["calls"] += sample.value
    return totals


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_money_and_calls_reach_prometheus_whole_in_either_temporality(
    otel_stack: Any, tmp_path: Path, temporality: str
) -> None:
    service = f"nons-temporality-{temporality}-{uuid.uuid4().hex[:8]}"
    truth = _run_application(otel_stack.collector, service, temporality, tmp_path)
    assert truth["calls"] == 36 and truth["cost_usd"] > 0
    # The last export reaches the exposition within the batch processor's timeout (1 s).
    deadline = time.monotonic() + 15
    exposed = _exposed(otel_stack.collector, service)
    while exposed["calls"] < truth["calls"] and time.monotonic() < deadline:
        time.sleep(0.2)
        exposed = _exposed(otel_stack.collector, service)
    assert exposed["calls"] == truth["calls"], (exposed, truth, otel_stack.collector.log()[-3000:])
    assert math.isclose(exposed["cost_usd"], truth["cost_usd"], rel_tol=1e-9), (exposed, truth)
