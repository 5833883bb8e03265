"""The scrape endpoint NoN serves with ``OTEL_METRICS_EXPORTER=prometheus`` (the README's second metrics route)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: One priced pass on the simulated provider, then this process's own scrape of its endpoint: the cost series
#: and target_info (the process's resource).
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, urllib.request
    from nons import ModelConfig, ModelProvider, NoN, Node, configure_telemetry
    configure_telemetry()
    network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini"))])
    asyncio.run(network.run("q"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
    cost = [line for line in text.splitlines() if line.startswith("nons_cost_USD_total{")]
    target = [line for line in text.splitlines() if line.startswith("target_info{")]
    print(json.dumps({"cost": cost, "target_info": target}))
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape_of_one_process(port: int) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    env.update({
        "OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port), "NON_ENABLE_TRACING": "false",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    })  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(port)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _copies_resource_attributes() -> bool:
    import inspect

    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    return "resource_attribute_filter" in inspect.signature(PrometheusMetricReader.__init__).parameters


@pytest.mark.skipif(
    not _copies_resource_attributes(),
    reason="this opentelemetry-exporter-prometheus (0.51b0, beside the oldest SDK) puts no resource attribute on "
    "the series, only on target_info (NoN warns of it)",
)
def test_a_process_restarted_on_the_same_port_has_series_of_its_own() -> None:
    # The scrape's instance label (host:port) is the same for both; without a label of their own, the second
    # process's counter continued the first's series from 0, and the dashboards' in-range panels, which count a
    # series that began within the range by its last value, lost what the first had spent.
    port = _free_port()
    first, second = _scrape_of_one_process(port), _scrape_of_one_process(port)
    instances = []
    for process in (first, second):
        [series] = process["cost"]  # type: ignore[misc]
        [target] = process["target_info"]  # type: ignore[misc]
        instance = _label(target, "service_instance_id")  # the process's resource
        assert _label(series, "service_instance_id") == instance
        instances.append(instance)
    assert instances[0] != instances[1]


def _label(series: str, name: str) -> str:
    found = re.search(rf'[{{,]{name}="([^"]+)"', series)
    assert found is not None, (name, series)
    return found.group(1)
