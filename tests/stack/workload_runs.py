"""Running ``workload.py`` against a Prometheus, by one of three routes, for the dashboard and end-to-end tests.

Routes (the ``workload`` fixture's parameter):

``prometheus-reader``
    engine -> OTel SDK ``PrometheusMetricReader`` (``OTEL_METRICS_EXPORTER=prometheus``) -> Prometheus scrape.
``otlp-grpc``, ``otlp-http``
    engine -> OTLP (gRPC or HTTP) -> the collector built from ``stack/otelcol`` with ``otel/collector.yaml``:
    traces to Jaeger v2 (``otel/jaeger.yaml``), metrics to its prometheus exporter, which the Prometheus of
    ``otel/prometheus.yml`` (rendered for loopback) scrapes; logs to the debug exporter. The compose stack's
    route, with the compose stack's configs.

``conftest.py`` makes the fixtures ``otel_stack`` and ``workload`` from these helpers.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_stack import Collector, Jaeger, free_port
from workload import PHASE_DONE, PHASE_METRIC, PHASE_WARM

WORKLOAD = Path(__file__).resolve().parent / "workload.py"
MARK = "NONS-WORKLOAD "
ROUTES = ("prometheus-reader", "otlp-grpc", "otlp-http")
SERVICES = {route: f"nons-workload-{route}" for route in ROUTES}


class WorkloadProcess:
    """The workload subprocess, with its protocol lines read by a thread so that waits can time out."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_", "NONS_"))}
        self.stderr_path = workdir / "workload.stderr"
        with self.stderr_path.open("wb") as stderr:
            # cwd: a directory without a .env file, so no local settings leak in.
            self.process = subprocess.Popen(
                [sys.executable, str(WORKLOAD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=workdir,
                # The Anthropic SDK's own spans off (its users' switch), so the trees hold what NoN records.
                env={**base, "PYTHONUNBUFFERED": "1", "ANTHROPIC_OPEN_TELEMETRY": "false", **env},
                text=True,
            )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="workload-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                self._lines.put(json.loads(line[len(MARK) :]))
        self._lines.put(None)  # EOF

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next protocol message, which must be ``event``, within ``timeout`` seconds."""
        try:
            message = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.dump_stacks()
            raise AssertionError(f"workload did not report {event!r} within {timeout:.0f} s{self.stderr()}") from None
        if message is None or message.get("event") != event:
            raise AssertionError(f"workload: expected {event!r}, got {str(message)[:2000]}{self.stderr()}")
        return message

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def dump_stacks(self) -> None:
        """Have a running workload print where its asyncio tasks (SIGUSR2) and threads (SIGUSR1, last, so that
        the stderr tail keeps it) are."""
        for dump in (signal.SIGUSR2, signal.SIGUSR1):
            if self.process.poll() is None:
                self.process.send_signal(dump)
                time.sleep(1)

    def stderr(self) -> str:
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return f"\nworkload stderr:\n{text[-20000:]}" if text else ""

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def workload_env(
    service: str, route: str, collector: Collector | None = None, port: int | None = None
) -> dict[str, str]:
    """The standard ``OTEL_*`` variables of one route, as an application would set them."""
    env = {
        "OTEL_SERVICE_NAME": service,
        "NON_ENVIRONMENT": "stack-test",
        # Every pass's spans stay in the in-process buffer, so the engine can report each trace's span count.
        "NON_OBSERVABILITY_BUFFER_SIZE": "1000000",
    }
    if route == "prometheus-reader":
        assert port is not None
        return env | {
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
    assert collector is not None
    protocol = "grpc" if route == "otlp-grpc" else "http/protobuf"
    if route == "otlp-http" and importlib.util.find_spec("fastotel") is not None:
        # Over HTTP the spans go out through fastotel's native processor (NON_SPAN_EXPORT=fastotel), so that its
        # export is checked end to end through the real collector and Jaeger; gRPC keeps the SDK's, the default.
        # (fastotel is in the test extra; without it, test_wire.py and test_fast_export.py say so, or fail in CI.)
        env["NON_SPAN_EXPORT"] = "fastotel"
    return env | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_endpoint(protocol),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        # The workload's tools log through an application logger: bridged with the standard switch (NoN bridges
        # only its own loggers by default).
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        # Metrics go out when the workload flushes them (after the warm-up, at the end) and every 2 s between.
        "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        # A batch the collector cannot take is given up after 3 s (and counted), not the default 10 s. The Python
        # SDK reads this variable in seconds (the specification says milliseconds): "3000" kept a batch retrying
        # for a minute, past the collector's return and the end of the test.
        "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
    }


# --------------------------------------------------------------------------------------------------- the stack


@dataclass
class OTelStack:
    """Jaeger, the collector and a Prometheus scraping it with the rendered ``otel/prometheus.yml``."""

    jaeger: Jaeger
    collector: Collector
    prometheus: Any  # conftest.PrometheusServer
    scrape_job: str = "otel-collector"


# ------------------------------------------------------------------------------------------------ the workload


@dataclass(frozen=True)
class ScrapedWorkload:
    """Prometheus after scraping the finished workload; evaluate panels ``at=t_final``."""

    route: str
    service: str
    prometheus: Any  # PrometheusServer (conftest)
    scrape_job: str  # the job that scraped the numbers: the collector's, or the workload's own endpoint
    truth: dict[str, Any]  # the whole run, warm-up included
    warm: dict[str, Any]  # the counts at the end of the warm-up
    report: dict[str, Any]  # the rest of the "done" message: spans per trace, logs, export statistics
    t_start: float  # before the subprocess started
    t_warm: float  # timestamp of the second scrape between the warm-up and the main run
    t_final: float  # timestamp of a scrape that started after the workload finished
    stack: OTelStack | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, str]:
        """Grafana's interval variables for a dashboard whose time range covers the whole run: it starts
        before the subprocess did and ends at ``t_final``."""
        window = f"{math.ceil(self.t_final - self.t_start) + 5}s"
        return {"__range": window, "__rate_interval": window, "__interval": "1s"}

    @property
    def main_run_values(self) -> dict[str, str]:
        """Interval variables for a time range from 1 ms before the ``t_warm`` scrape to ``t_final``: the main
        run. Every series existed before the range and has its first sample in the range 1 ms after its start,
        so ``increase()`` and ``rate()`` extrapolate by 1 ms only, alike for every series."""
        window = f"{round((self.t_final - self.t_warm) * 1000) + 1}ms"
        return {"__range": window, "__rate_interval": window, "__interval": "1s"}


def last_scrape(prometheus: Any, job: str) -> float | None:
    """Timestamp of the latest successful scrape of ``job``'s one target, or None."""
    # timestamp() gives a sample's own time only when applied to a plain selector: timestamp(up == 1) would
    # return the evaluation time.
    result = prometheus.query(f'timestamp(up{{job="{job}"}})')
    if not result or prometheus.query_values(f'up{{job="{job}"}}') != [1.0]:
        return None
    return float(result[0]["value"][1])


def wait_for_scrape_after(prometheus: Any, job: str, after: float, timeout: float = 30.0) -> float:
    """Wait for a successful scrape of ``job`` that started after ``after`` (epoch s); return its timestamp."""
    deadline = time.monotonic() + timeout
    while True:
        last = last_scrape(prometheus, job)
        if last is not None and last > after:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no scrape of {job!r} after {after:.3f} within {timeout:.0f} s: {prometheus.targets(job)}"
            )
        time.sleep(0.2)


def scrape_with_phase(prometheus: Any, service: str, phase: int, timeout: float = 60.0) -> float:
    """The timestamp of a scrape that shows the workload's ``workload_phase`` gauge at ``phase``: the numbers
    flushed with it (same export, same collector batch) are in that scrape too."""
    series = f'{PHASE_METRIC}{{service_name="{service}"}}'
    deadline = time.monotonic() + timeout
    while prometheus.query_values(series) != [float(phase)]:
        if time.monotonic() > deadline:
            raise AssertionError(f"no scrape of {service} showed workload_phase {phase} within {timeout:.0f} s")
        time.sleep(0.2)
    # The gauge keeps its value from here on, so the latest sample is a scrape at that phase. timestamp() gives
    # a sample's own time only when applied to a plain selector (timestamp(x == 1) is the evaluation time).
    return float(prometheus.query(f"timestamp({series})")[0]["value"][1])


def run_workload(route: str, prometheus: Any, workdir: Path, stack: OTelStack | None = None) -> ScrapedWorkload:
    """Run the workload by ``route`` until Prometheus has its final numbers (see ``workload.py`` for the
    protocol). The subprocess is gone when this returns: the tests query Prometheus at ``t_final`` and Jaeger,
    which keep what they received."""
    service = SERVICES[route]
    started = time.time()
    if stack is None:
        job = service
        process = WorkloadProcess(workdir, workload_env(service, route, port=free_port()))
    else:
        job = stack.scrape_job
        process = WorkloadProcess(workdir, workload_env(service, route, collector=stack.collector))
    try:
        warm = process.expect("warm", timeout=180)
        if stack is None:
            prometheus.scrape([f"127.0.0.1:{warm['port']}"], job=job)
        # Two scrapes of the warm-up's counts, in which every series of the run exists: a range that starts
        # between them sees each series before it starts (offset) and the warm-up's counts as its first sample.
        t_first = scrape_with_phase(prometheus, service, PHASE_WARM)
        t_warm = wait_for_scrape_after(prometheus, job, t_first)
        process.send("go")
        # Generous: the run takes a minute or two, but on a machine shared with other test runs it took over five.
        done = process.expect("done", timeout=900)
        t_final = scrape_with_phase(prometheus, service, PHASE_DONE)
        report = {key: value for key, value in done.items() if key not in ("event", "truth")}
        return ScrapedWorkload(
            route, service, prometheus, job, done["truth"], warm, report, started, t_warm, t_final, stack
        )
    finally:
        process.stop()
        if stack is None:
            prometheus.scrape([], job=job)
