"""A local OTLP/HTTP receiver that decodes and counts what it is sent: ``python -m bench.compare.sink``.

It prints its port on the first line, then serves until killed:

- ``POST /v1/traces``: an ``ExportTraceServiceRequest``; every span in it is counted;
- ``POST /v1/metrics``: an ``ExportMetricsServiceRequest``; every data point in it is counted;
- ``GET /stats``: the counts so far, as JSON (the benchmark reads them before and after each contender).

It runs in its own process, so its decoding is not charged to the contender being measured. Decoding each
request (rather than discarding the bytes) is what shows that every exported span arrived whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_lock = threading.Lock()
_counts = {"spans": 0, "metric_points": 0, "trace_requests": 0, "metric_requests": 0, "bad_requests": 0}


def _metric_points(request: ExportMetricsServiceRequest) -> int:
    points = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    points += len(getattr(metric, kind).data_points)
    return points


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            if self.path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                spans = sum(len(s.spans) for r in traces.resource_spans for s in r.scope_spans)
                self._count(spans=spans, trace_requests=1)
                reply = ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                self._count(metric_points=_metric_points(metrics), metric_requests=1)
                reply = ExportMetricsServiceResponse().SerializeToString()
            else:
                self._count(bad_requests=1)
                self._reply(404, b"", "text/plain")
                return
        except Exception:  # a body that does not decode is counted, never silently accepted
            self._count(bad_requests=1)
            self._reply(400, b"", "text/plain")
            return
        self._reply(200, reply, "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path != "/stats":
            self._reply(404, b"", "text/plain")
            return
        with _lock:
            body = json.dumps(_counts).encode()
        self._reply(200, body, "application/json")

    def _count(self, **increments: int) -> None:
        with _lock:
            for key, value in increments.items():
                _counts[key] += value

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


#: What turns NoN's telemetry off, for the contenders measured without it (NoN off, and NoN in the opcode map).
TELEMETRY_OFF = {"NON_ENABLE_TRACING": "false", "NON_ENABLE_METRICS": "false"}


def clean_env() -> dict[str, str]:
    """This process's environment without its ``OTEL_*`` and ``NON_*`` variables: a child measured in it gets
    only the settings the benchmark gives it."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}


def export_env(port: int, span_queue: int) -> dict[str, str]:
    """:func:`clean_env`, plus what sends a child's spans and metrics over OTLP/HTTP to the sink on ``port`` (logs
    off), with room for ``span_queue`` spans in the batch queue: a dropped span is never encoded, and would
    flatter the figure."""
    env = clean_env()
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_BSP_MAX_QUEUE_SIZE": str(span_queue),
        }
    )
    return env


@contextlib.contextmanager
def running_sink() -> Iterator[int]:
    """A sink in a process of its own while the block runs; its port."""
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-m", "bench.compare.sink"], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
