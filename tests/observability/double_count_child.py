"""Child process of test_double_counting: NoN and the contrib ``opentelemetry-instrumentation-google-genai`` in
one process, both instrumenting ``google.genai``'s ``AsyncModels.generate_content``.

A fresh interpreter, because an instrumentor patches the SDK for the whole process. NoN's network makes
:data:`CALLS` Gemini calls; the application then makes one Gemini call of its own, straight through the SDK.
Prints one JSON object: the spans and the metric points, each with the instrumentation scope that recorded it,
and the ``gen_ai_client_operation_duration_seconds_count`` lines of a Prometheus scrape of the SDK's Prometheus
reader (as the stack's direct path scrapes it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from typing import Any

from google import genai
from google.genai import types
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import start_http_server

from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ModelConfig, ModelProvider, NetworkConfig
from nons.testing import ProviderEmulator, Reply

CALLS = 3
DURATION_COUNT = "gen_ai_client_operation_duration_seconds_count"


async def workload(emu: ProviderEmulator) -> float:
    emu.script("google", [Reply(text="hi", input_tokens=20, output_tokens=5)] * (CALLS + 1))
    config = ModelConfig(provider=ModelProvider.GOOGLE, model_name="gemini-2.0-flash", api_key="sk-double",
                         base_url=emu.base_url_for("google"), price_provider="google")
    network = NoN([Layer([Node("generate", config)])], config=NetworkConfig(name="double"))
    total = 0.0
    for _ in range(CALLS):
        total += (await network.run("hello")).cost_usd
    # The application's own call, outside NoN: the contrib instrumentation records it, NoN does not.
    client = genai.Client(api_key="sk-app", http_options=types.HttpOptions(base_url=emu.base_url_for("google")))
    await client.aio.models.generate_content(model="gemini-2.0-flash", contents="hello")
    await client.aio.aclose()
    return total


def main() -> None:
    port = int(sys.argv[1])
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader, PrometheusMetricReader()])
    metrics.set_meter_provider(meter_provider)
    start_http_server(port, addr="127.0.0.1")
    # The instrumentation names google-genai<3 as its dependency; the 3.x SDK has the same generate_content.
    GoogleGenAiSdkInstrumentor().instrument(
        tracer_provider=tracer_provider, meter_provider=meter_provider, skip_dep_check=True
    )

    with ProviderEmulator() as emu:
        cost = asyncio.run(workload(emu))

    points: list[dict[str, Any]] = []
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    points.append({
                        "scope": sm.scope.name, "name": metric.name, "attributes": dict(p.attributes),
                        "count": getattr(p, "count", None), "value": getattr(p, "value", None),
                    })
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    print(json.dumps({
        "cost": cost,
        "spans": [{"name": s.name, "scope": s.instrumentation_scope.name if s.instrumentation_scope else None}
                  for s in spans.get_finished_spans()],
        "points": points,
        "scrape": [line for line in scrape.splitlines() if line.startswith(DURATION_COUNT)],
    }))


if __name__ == "__main__":
    main()
