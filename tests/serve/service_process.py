"""``nons serve`` as a real process on a loopback port, for the service tests and the benchmark.

    with start_service(tmp_path, SPEC, tokens={"alice": ALICE}) as service:
        response = service.post("/v1/networks/echo/run", {"input": "hi"}, token=ALICE)
        ...
        code = service.terminate()          # SIGTERM, then the exit code

The process gets a clean environment (no NON_* variable or key from the developer's shell): only what the test
passes in ``env``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef0"

#: Networks the service tests run. All use the simulated provider.
SPEC = """\
version: 1
models:
  sim: {model: mock/gpt-4o-mini, extra_params: {mock_seed: 7}}
  slow: {model: mock/gpt-4o-mini, extra_params: {mock_seed: 7, mock_latency_s: 1.5}}
  broken: {model: mock/gpt-4o-mini, extra_params: {mock_failure_rate: 1.0, mock_failure_kind: server_error}}
networks:
  best-of-3:
    description: three answers and a vote
    layers: ["3 x generate@sim", pack_candidates, majority]
  classify:
    layers:
      - operator: classify
        model: sim
        params: {categories: [question, statement]}
  slow:
    layers: ["generate@slow"]
  short:
    max_input_chars: 10
    layers: ["generate@sim"]
  failing:
    layers: ["generate@broken"]
  timeout:
    timeout_seconds: 0.2
    layers: ["generate@slow"]
"""


def require_program(name: str, apt_package: str) -> str:
    """Path of an executable; skip the test when it is missing, but fail in CI (``CI=true``)."""
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install -y --no-install-recommends {apt_package})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must install it", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_until_closed(sock: socket.socket) -> str:
    """Everything the service sends on ``sock`` until it closes the connection, decoded: an answer may come in
    more than one segment (its headers, then its body), so one ``recv`` can miss the body."""
    chunks = []
    while chunk := sock.recv(65_536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment without the developer's NON_*, OTEL_* or key variables."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONUNBUFFERED": "1",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    env.update(extra or {})
    return env


def otlp_env(receiver: Any) -> dict[str, str]:
    """Variables that send a service's traces and metrics to ``receiver`` over OTLP/gRPC, quickly."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_SERVICE_NAME": "nons-serve-test",
    }


@dataclass
class ServiceProcess:
    """A running ``nons serve``; its output goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # An earlier test may have instrumented httpx in this process: its client spans would inject their own
        # traceparent into these requests and make the test process the caller of every trace.
        with suppress_http_instrumentation():
            return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, token=token, **kwargs)

    def post(self, path: str, body: Any = None, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, token=token, json=body, **kwargs)

    def run(self, network: str, text: str, *, token: str | None = ALICE, **kwargs: Any) -> httpx.Response:
        return self.post(f"/v1/networks/{network}/run", {"input": text}, token=token, **kwargs)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nons serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"nons serve did not answer /healthz within {timeout} s:\n{self.log()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def terminate(self, timeout: float = 60.0) -> int:
        """Send SIGTERM and wait for the exit code."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def start_service(
    workdir: Path,
    spec: str = SPEC,
    *,
    tokens: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> Iterator[ServiceProcess]:
    """Run ``nons serve`` on a free loopback port for the ``with`` block (stopped with SIGTERM, then killed).

    ``tokens`` (caller -> token) go to a tokens file; ``None`` gives none (add ``--insecure-dev`` to ``args``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "networks.yaml"
    spec_path.write_text(spec, encoding="utf-8")
    command = [sys.executable, "-m", "nons.cli", "serve", str(spec_path), "--port", str(port := free_port())]
    if tokens:
        tokens_path = workdir / "tokens.txt"
        tokens_path.write_text("".join(f"{caller}:{token}\n" for caller, token in tokens.items()), encoding="utf-8")
        command += ["--tokens-file", str(tokens_path)]
    command += list(args)
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=clean_env(env), cwd=workdir
        )
    service = ServiceProcess(process, port, log_path)
    try:
        if wait:
            service.wait_ready()
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
