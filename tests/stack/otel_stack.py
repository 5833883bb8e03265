"""The bundled stack as real processes on loopback: the collector and Jaeger that ``scripts/stack-binaries``
builds, each running the repository's own config (``otel/collector.yaml``, ``otel/jaeger.yaml``), and the
rendering of ``otel/prometheus.yml`` for a Prometheus on 127.0.0.1.

The configs take their listen addresses from ``${env:VAR:-default}``; the defaults are the compose containers',
and :class:`Collector` and :class:`Jaeger` set every one to a free port on 127.0.0.1. Nothing is copied or
edited between the two uses.

Binaries are found in ``NONS_OTELCOL``, ``NONS_JAEGER`` and ``NONS_PROMETHEUS`` (``.ci/run`` exports them), or
else by asking ``scripts/stack-binaries --check`` for what is already built. :func:`require_stack_binary` skips
a test when one is missing, and fails it in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = ROOT / "otel" / "collector.yaml"
JAEGER_CONFIG = ROOT / "otel" / "jaeger.yaml"
PROMETHEUS_CONFIG = ROOT / "otel" / "prometheus.yml"
STACK_BINARIES = ROOT / "scripts" / "stack-binaries"

#: Binary name (as scripts/stack-binaries prints it) -> the environment variable that may name its path.
BINARY_VARIABLES = {"otelcol": "NONS_OTELCOL", "jaeger": "NONS_JAEGER", "prometheus": "NONS_PROMETHEUS"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@cache
def _built_binaries() -> tuple[dict[str, str], str]:
    """What ``scripts/stack-binaries --check`` reports as built, and why the rest is missing."""
    if shutil.which("go") is None:
        return {}, "Go is not installed, so scripts/stack-binaries cannot build the stack"
    result = subprocess.run(
        [str(STACK_BINARIES), "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return found, result.stderr.strip() or "scripts/stack-binaries --check failed"


def stack_binary(name: str) -> str | None:
    """The path of a stack binary (``otelcol``, ``jaeger``, ``prometheus``), or None when it is not built."""
    from_env = os.environ.get(BINARY_VARIABLES[name])
    if from_env:
        return from_env if os.access(from_env, os.X_OK) else None
    return _built_binaries()[0].get(name)


def require_stack_binary(name: str) -> str:
    """:func:`stack_binary`, or skip the test (fail it in CI) saying how to build it."""
    path = stack_binary(name)
    if path is None:
        variable = BINARY_VARIABLES[name]
        reason = os.environ.get(variable) and f"{variable}={os.environ[variable]} is not executable"
        message = f"{name} is not built ({reason or _built_binaries()[1]}); run scripts/stack-binaries"
        if in_ci():
            pytest.fail(f"{message}; CI must build it", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll until ``condition()`` holds; tests wait for an event, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET; a refused connection is status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except OSError:
        return 0, b""


@dataclass
class StackProcess:
    """One program of the stack, started with its config and an environment of listen addresses."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start the process (its output appended to :attr:`log_path`) and wait until its health check is 200."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
            )
        self.starts += 1

        def healthy() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return http_get(self.health_url, timeout=1)[0] == 200

        wait_for(healthy, timeout, f"{self.name} health check {self.health_url}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a graceful shutdown: receivers close, batches and queues are flushed), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@dataclass
class Jaeger(StackProcess):
    """Jaeger v2 with ``otel/jaeger.yaml``: OTLP gRPC in, memory storage, the query API."""

    otlp_port: int = 0
    query_port: int = 0

    @classmethod
    def create(cls, binary: str, workdir: Path) -> Jaeger:
        ports = {name: free_port() for name in ("OTLP", "UI", "QUERY_GRPC", "HEALTH", "METRICS")}
        env = {"NONS_JAEGER_HOST": "127.0.0.1", **{f"NONS_JAEGER_{k}_PORT": str(v) for k, v in ports.items()}}
        return cls(
            name="jaeger",
            argv=[binary, "--config", str(JAEGER_CONFIG)],
            env=env,
            health_url=f"http://127.0.0.1:{ports['HEALTH']}/status",
            log_path=workdir / "jaeger.log",
            otlp_port=ports["OTLP"],
            query_port=ports["UI"],
        )

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace from the query API (``/api/traces/{id}``: spans with references, tags and logs), or None."""
        status, body = http_get(f"{self.query_url}/api/traces/{trace_id}")
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"jaeger /api/traces/{trace_id}: HTTP {status} {body[:500]!r}")
        data = json.loads(body)["data"]
        return dict(data[0]) if data else None

    def services(self) -> list[str]:
        status, body = http_get(f"{self.query_url}/api/services")
        assert status == 200, (status, body)
        return list(json.loads(body)["data"] or [])


@dataclass
class Collector(StackProcess):
    """The collector built from ``stack/otelcol`` with ``otel/collector.yaml``, exporting traces to ``jaeger``."""

    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, binary: str, workdir: Path, jaeger: Jaeger) -> Collector:
        ports = {name: free_port() for name in ("OTLP_GRPC", "OTLP_HTTP", "HEALTH", "PROMETHEUS", "TELEMETRY")}
        env = {
            "NONS_COLLECTOR_HOST": "127.0.0.1",
            "NONS_OTLP_GRPC_PORT": str(ports["OTLP_GRPC"]),
            "NONS_OTLP_HTTP_PORT": str(ports["OTLP_HTTP"]),
            "NONS_COLLECTOR_HEALTH_PORT": str(ports["HEALTH"]),
            "NONS_COLLECTOR_PROMETHEUS_PORT": str(ports["PROMETHEUS"]),
            "NONS_COLLECTOR_TELEMETRY_PORT": str(ports["TELEMETRY"]),
            "NONS_JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{jaeger.otlp_port}",
        }
        return cls(
            name="otelcol",
            argv=[binary, f"--config={COLLECTOR_CONFIG}"],
            env=env,
            health_url=f"http://127.0.0.1:{ports['HEALTH']}/",
            log_path=workdir / "otelcol.log",
            ports=ports,
        )

    def otlp_endpoint(self, protocol: str) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for ``grpc`` or ``http/protobuf``."""
        port = self.ports["OTLP_GRPC"] if protocol == "grpc" else self.ports["OTLP_HTTP"]
        return f"http://127.0.0.1:{port}"

    def compose_addresses(self, prometheus_port: int) -> dict[str, str]:
        """Where each scrape target of ``otel/prometheus.yml`` (compose host names) is in this test."""
        return {
            "otel-collector:8889": f"127.0.0.1:{self.ports['PROMETHEUS']}",
            "otel-collector:8888": f"127.0.0.1:{self.ports['TELEMETRY']}",
            "localhost:9090": f"127.0.0.1:{prometheus_port}",
        }


def render_prometheus_config(addresses: Mapping[str, str], scrape_interval: str = "1s") -> dict[str, Any]:
    """``otel/prometheus.yml`` with each compose target replaced by its test address, and a short interval.

    Every other setting (job names, ``honor_labels``, the jobs themselves) stays as in the file; a target with
    no test address is an error, so a job added to the file cannot go untested.
    """
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(
        scrape_interval=scrape_interval, scrape_timeout=scrape_interval, evaluation_interval=scrape_interval
    )
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            unknown = [target for target in static["targets"] if target not in addresses]
            if unknown:
                raise KeyError(f"otel/prometheus.yml job {job['job_name']}: no test address for {unknown}")
            static["targets"] = [addresses[target] for target in static["targets"]]
    return config


_RECORD = re.compile(r"LogRecord #\d+\n(?P<body>.*?)(?=LogRecord #\d+\n|ResourceLog #\d+|\Z)", re.DOTALL)


def collector_log_records(log: str, service: str) -> list[dict[str, str]]:
    """The log records the debug exporter wrote (verbosity detailed) for ``service``: body, trace and span id."""
    records = []
    for block in re.split(r"ResourceLog #\d+\n", log)[1:]:
        if f"-> service.name: Str({service})" not in block:
            continue
        for match in _RECORD.finditer(block):
            text = match.group("body")
            body = re.search(r"^Body: Str\((.*)\)$", text, re.MULTILINE)
            trace_id = re.search(r"^Trace ID: ?(\w*)$", text, re.MULTILINE)
            span_id = re.search(r"^Span ID: ?(\w*)$", text, re.MULTILINE)
            records.append(
                {
                    "body": body.group(1) if body else "",
                    "trace_id": trace_id.group(1) if trace_id else "",
                    "span_id": span_id.group(1) if span_id else "",
                }
            )
    return records
