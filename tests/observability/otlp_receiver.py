"""A minimal OTLP receiver for the wire tests: gRPC and HTTP/protobuf on 127.0.0.1, decoded with
``opentelemetry-proto``.

It stands in for an OpenTelemetry Collector (none can be installed here). The gRPC side implements
``TraceService``, ``MetricsService`` and ``LogsService`` ``Export``; the HTTP side accepts ``POST /v1/traces``,
``/v1/metrics`` and ``/v1/logs`` (gzip or not). Every request is kept decoded, with its raw bytes, so a test can
check what reached the wire::

    with OTLPReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        ...  # run the exporting side in a subprocess
        receiver.wait_for(lambda r: r.spans())
        spans = receiver.spans()  # [(resource attributes, scope name, span), ...]

Run as a script (``python otlp_receiver.py``) it serves until killed, accepting and discarding everything, and
prints ``grpc=PORT http=PORT`` once ready (a sink for the telemetry benchmark).
"""

from __future__ import annotations

import gzip
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["OTLPReceiver", "Received", "any_value", "attributes"]

_MESSAGES: dict[str, tuple[type[Any], type[Any]]] = {
    "traces": (trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "metrics": (metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse),
    "logs": (logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` pairs as a dict."""
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass
class Received:
    """One export request: its signal, transport (``grpc`` or ``http``), decoded message and raw bytes, and (over
    HTTP) its ``User-Agent``, which says which exporter sent it."""

    signal: str
    transport: str
    message: Any
    raw: bytes
    user_agent: str = ""


@dataclass
class OTLPReceiver:
    """The receiver; use it as a context manager. ``keep=False`` makes it a sink that stores nothing."""

    keep: bool = True
    received: list[Received] = field(default_factory=list)
    grpc_port: int = 0
    http_port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Listen on two ephemeral ports of 127.0.0.1."""
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), self._grpc)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), self._grpc)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        handler = type("_BoundHandler", (_HTTPHandler,), {"receiver": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="otlp-http-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop both servers."""
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # -- what arrived ---------------------------------------------------------------------------------------

    def record(self, signal: str, transport: str, message: Any, raw: bytes, user_agent: str = "") -> None:
        if self.keep:
            with self._lock:
                self.received.append(Received(signal, transport, message, raw, user_agent))

    def requests(self, signal: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.signal == signal]

    def spans(self) -> list[tuple[dict[str, Any], str, Any]]:
        """Every span received: (resource attributes, scope name, ``Span`` message)."""
        return [
            (attributes(rs.resource.attributes), ss.scope.name, span)
            for r in self.requests("traces")
            for rs in r.message.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def metrics(self) -> list[tuple[dict[str, Any], str, Any]]:
        """Every metric received: (resource attributes, scope name, ``Metric`` message)."""
        return [
            (attributes(rm.resource.attributes), sm.scope.name, metric)
            for r in self.requests("metrics")
            for rm in r.message.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        ]

    def logs(self) -> list[tuple[dict[str, Any], str, Any]]:
        """Every log record received: (resource attributes, scope name, ``LogRecord`` message)."""
        return [
            (attributes(rl.resource.attributes), sl.scope.name, record)
            for r in self.requests("logs")
            for rl in r.message.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]

    def raw_bytes(self) -> Iterator[bytes]:
        with self._lock:
            items = list(self.received)
        for r in items:
            yield r.raw

    def wait_for(self, predicate: Callable[[OTLPReceiver], object], timeout: float = 20.0) -> None:
        """Wait until ``predicate(self)`` is true; fail with what arrived when it does not become true."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                counts = {s: len(self.requests(s)) for s in _MESSAGES}
                raise AssertionError(f"the receiver did not get what was expected in {timeout}s; got {counts}")
            time.sleep(0.05)


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OTLPReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.record("traces", "grpc", request, request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OTLPReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.record("metrics", "grpc", request, request.SerializeToString())
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OTLPReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.record("logs", "grpc", request, request.SerializeToString())
        return logs_service_pb2.ExportLogsServiceResponse()


class _HTTPHandler(BaseHTTPRequestHandler):
    receiver: OTLPReceiver
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporters' sessions expect

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def do_POST(self) -> None:
        signal = self.path.rstrip("/").rsplit("/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if signal not in _MESSAGES or not self.path.startswith("/v1/"):
            self._answer(404, b"")
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        request_type, response_type = _MESSAGES[signal]
        message = request_type()
        message.ParseFromString(body)
        self.receiver.record(signal, "http", message, body, self.headers.get("User-Agent", ""))
        self._answer(200, response_type().SerializeToString())

    def _answer(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


if __name__ == "__main__":
    sink = OTLPReceiver(keep=False).start()
    print(f"grpc={sink.grpc_port} http={sink.http_port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sink.stop()
        sys.exit(0)
