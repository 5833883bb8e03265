"""SIGTERM with requests in flight: the service stops taking work, finishes what it has within the grace
period, flushes telemetry and exits 0, inside Kubernetes' 30 s."""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_process import ALICE, SPEC, ServiceProcess, otlp_env, read_until_closed, start_service

pytestmark = pytest.mark.timeout(180)

SERVER = 2  # SpanKind SERVER in OTLP
IN_FLIGHT = 5


def _wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _in_flight(service: ServiceProcess) -> int:
    count: int = service.get("/readyz").json()["in_flight_requests"]
    return count


def test_sigterm_drains_finishes_in_flight_flushes_and_exits_0(tmp_path: Path, otlp_receiver: Any) -> None:
    env = otlp_env(otlp_receiver)
    # Spans are exported only at the end: what the receiver holds after the exit came from the shutdown flush.
    env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
    args = ["--drain-delay", "2", "--grace-period", "15"]
    with start_service(tmp_path, tokens={"alice": ALICE}, env=env, args=args) as service, ThreadPoolExecutor(
        IN_FLIGHT
    ) as pool:
        runs = [pool.submit(service.run, "slow", f"question {i}") for i in range(IN_FLIGHT)]
        _wait_until(lambda: _in_flight(service) == IN_FLIGHT, 30, "the runs to be in flight")

        service.signal()
        ready = service.get("/readyz")
        assert ready.status_code == 503 and ready.json()["draining"] is True and ready.json()["ready"] is False
        refused = service.run("best-of-3", "new work")
        assert refused.status_code == 503 and refused.json()["error"] == "draining"
        assert refused.headers["Retry-After"] == "1"

        responses = [run.result(timeout=60) for run in runs]
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT, [r.text for r in responses]
        trace_ids = {r.json()["trace_id"] for r in responses}
        assert service.process.wait(timeout=35) == 0
        log = service.log()

    assert "SIGTERM received: draining" in log and f"{IN_FLIGHT} run(s) in flight" in log
    with pytest.raises(httpx.ConnectError):
        service.get("/healthz")  # nothing listens any more
    received = {span.trace_id.hex() for _, _, span in otlp_receiver.spans() if span.kind == SERVER}
    assert trace_ids <= received, "the in-flight requests' spans were flushed before the exit"


def test_runs_longer_than_the_grace_period_are_cut_and_the_process_still_exits(tmp_path: Path) -> None:
    spec = SPEC + """\
  very-slow:
    layers: [{operator: generate, model: {model: mock/gpt-4o-mini, extra_params: {mock_latency_s: 120}}}]
"""
    args = ["--drain-delay", "0", "--grace-period", "2", "--telemetry-flush", "1"]
    with start_service(tmp_path, spec, tokens={"alice": ALICE}, args=args) as service, ThreadPoolExecutor(1) as pool:
        run = pool.submit(service.run, "very-slow", "never answered")
        _wait_until(lambda: _in_flight(service) == 1, 30, "the run to be in flight")
        service.signal()
        # The run would take 120 s: the process ends first, because the grace period cut the run.
        assert service.process.wait(timeout=30) == 0
        cut = run.result(timeout=30)
    assert cut.status_code == 503 and cut.json()["error"] == "shut_down" and cut.headers["Retry-After"] == "1"
    assert "timeout graceful shutdown exceeded" in service.log()


def test_a_request_whose_body_is_still_arriving_when_the_grace_period_ends_is_503_shut_down(tmp_path: Path) -> None:
    # Before, a bare "500 Internal Server Error" in text, and a traceback in the log.
    args = ["--drain-delay", "0", "--grace-period", "1", "--telemetry-flush", "1"]
    with start_service(tmp_path, tokens={"alice": ALICE}, args=args) as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
            head = (f"POST /v1/networks/best-of-3/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")  # fmt: skip
            sock.sendall(head.encode() + b'{"in')
            time.sleep(0.5)  # the body is being read
            service.signal()
            answer = read_until_closed(sock)
        assert service.process.wait(timeout=30) == 0
    assert answer.startswith("HTTP/1.1 503") and '"error":"shut_down"' in answer and "retry-after: 1" in answer.lower()
    assert "Exception in ASGI application" not in service.log()


def test_a_second_signal_skips_the_drain_delay(tmp_path: Path) -> None:
    args = ["--drain-delay", "600", "--grace-period", "2"]
    with start_service(tmp_path, tokens={"alice": ALICE}, args=args) as service:
        service.signal()
        _wait_until(lambda: service.get("/readyz").status_code == 503, 30, "draining")
        service.signal()
        assert service.process.wait(timeout=30) == 0


def _very_slow(seconds: float) -> str:
    return SPEC + f"""\
  very-slow:
    layers: [{{operator: generate, model: {{model: mock/gpt-4o-mini, extra_params: {{mock_latency_s: {seconds}}}}}}}]
"""


def test_a_second_ctrl_c_during_the_grace_period_exits_at_once(tmp_path: Path) -> None:
    # The drain's end did not tell uvicorn a signal had come: the second Ctrl+C only began its shutdown (which
    # waited for the run), and it took a third to force the exit.
    args = ["--drain-delay", "0.2", "--grace-period", "60", "--telemetry-flush", "1"]
    with start_service(tmp_path, _very_slow(60), tokens={"alice": ALICE}, args=args) as service, ThreadPoolExecutor(
        1
    ) as pool:
        run = pool.submit(service.run, "very-slow", "never answered")
        _wait_until(lambda: _in_flight(service) == 1, 30, "the run to be in flight")
        service.signal(signal.SIGINT)
        _wait_until(lambda: "Waiting for connections to close" in service.log(), 30, "the grace period")
        started = time.monotonic()
        service.signal(signal.SIGINT)
        assert service.process.wait(timeout=30) == 0
        cut = run.result(timeout=30)
    assert time.monotonic() - started < 10, "the second Ctrl+C did not end the grace period"
    assert cut.status_code == 503 and cut.json()["error"] == "shut_down"


def test_a_grace_period_of_a_fraction_of_a_second_is_kept_whole(tmp_path: Path) -> None:
    # It was rounded to whole seconds: with 2.5 s (rounded to 2), a run that needed 2.3 s after SIGTERM was cut.
    args = ["--drain-delay", "0", "--grace-period", "2.5", "--telemetry-flush", "1"]
    with start_service(tmp_path, _very_slow(2.3), tokens={"alice": ALICE}, args=args) as service, ThreadPoolExecutor(
        1
    ) as pool:
        run = pool.submit(service.run, "very-slow", "answered in time")
        _wait_until(lambda: _in_flight(service) == 1, 30, "the run to be in flight")
        service.signal()
        answered = run.result(timeout=30)
        assert service.process.wait(timeout=30) == 0
    assert answered.status_code == 200, answered.text
