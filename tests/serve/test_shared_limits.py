"""Replicas that share a Redis count each caller's requests and spend together: five replicas behind a load
balancer then hold a caller to its limits, not to five times them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from service_process import ALICE, BOB, SPEC, free_port, require_program, start_service

from nons.serve.limits import CallerLimits, LimitsUnavailable

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis server on a free loopback port, without persistence."""
    binary = require_program("redis-server", "redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_two_replicas_share_the_rate_and_spend_of_each_caller(tmp_path: Path, redis_url: str) -> None:
    tokens = {"alice": ALICE, "bob": BOB}
    rate = ["--limits-storage", redis_url, "--rate-limit", "3/minute"]
    with start_service(tmp_path / "a", tokens=tokens, args=rate) as a, start_service(
        tmp_path / "b", tokens=tokens, args=rate
    ) as b:
        assert [a.run("best-of-3", "1").status_code, b.run("best-of-3", "2").status_code] == [200, 200]
        assert a.run("best-of-3", "3").status_code == 200
        refused = b.run("best-of-3", "4")
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert a.run("best-of-3", "bob's own count", token=BOB).status_code == 200

    spend = ["--limits-storage", redis_url, "--rate-limit", "100/minute", "--spend-limit-usd-per-day", "0.000001"]
    with start_service(tmp_path / "c", tokens=tokens, args=spend) as c, start_service(
        tmp_path / "d", tokens=tokens, args=spend
    ) as d:
        assert c.run("best-of-3", "spends more than the limit", token=BOB).status_code == 200
        refused = d.run("best-of-3", "on the other replica", token=BOB)
        assert refused.status_code == 429 and refused.json()["error"] == "spend_limited"


def test_an_unreachable_store_fails_the_request_not_the_process(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    with start_service(tmp_path, tokens={"alice": ALICE}, args=["--limits-storage", dead]) as service:
        response = service.run("best-of-3", "hi")
        assert response.status_code == 503 and response.json()["error"] == "limits_unavailable"
        # Readiness does not depend on the store: a Redis outage must not take every replica out of the load
        # balancer at once; the refusals say what is wrong instead.
        assert service.get("/healthz").status_code == 200 and service.get("/readyz").status_code == 200


async def test_a_stalled_store_refuses_the_request_in_bounded_time_instead_of_holding_it(
    redis_factory: Callable[[], Any],
) -> None:
    # A store that accepts connections but never answers (a paused or overloaded Redis): every request would
    # otherwise wait for it for ever, and the shutdown with it.
    server = redis_factory()
    limits = CallerLimits("100/minute", 1.0, server.url, timeout_s=0.5)
    assert await limits.admit("alice") is None  # connected, and answering
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(LimitsUnavailable, match=r"no answer within 0\.5 s"):
            await asyncio.wait_for(limits.admit("alice"), 10)
        with pytest.raises(LimitsUnavailable):
            await asyncio.wait_for(limits.admit("bob"), 10)
        await asyncio.wait_for(limits.record_spend("alice", "best-of-3", 0.25), 10)  # logged, not raised, and not held
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert await limits.admit("alice") is None  # answering again


def test_a_run_cut_at_shutdown_answers_503_and_its_spend_reaches_the_shared_store(
    tmp_path: Path, redis_url: str
) -> None:
    # The cut run records its spend with a Redis round trip after uvicorn cancelled it; the process must wait
    # for that record rather than end and cancel it half-way (which answered 500 and lost the spend).
    spec = SPEC + """\
  spends-then-hangs:
    layers:
      - generate@sim
      - {operator: generate, model: {model: mock/gpt-4o-mini, extra_params: {mock_latency_s: 120}}}
"""
    limits = ["--limits-storage", redis_url, "--rate-limit", "100/minute", "--spend-limit-usd-per-day", "0.000001"]
    shutdown = ["--drain-delay", "0", "--grace-period", "1", "--telemetry-flush", "1"]
    with start_service(tmp_path / "a", spec, tokens={"alice": ALICE}, args=limits + shutdown) as a, ThreadPoolExecutor(
        1
    ) as pool:
        run = pool.submit(a.run, "spends-then-hangs", "cut at shutdown")
        deadline = time.monotonic() + 30
        while a.get("/readyz").json()["in_flight_requests"] != 1:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        time.sleep(0.5)  # its first layer's call answers, and is paid for
        a.signal()
        assert a.process.wait(timeout=30) == 0
        cut = run.result(timeout=30)
        assert cut.status_code == 503 and cut.json()["error"] == "shut_down", cut.text
        assert "spend of caller" not in a.log(), "the spend was recorded"

    with start_service(tmp_path / "b", spec, tokens={"alice": ALICE}, args=limits) as b:
        refused = b.run("best-of-3", "on another replica")
        assert refused.status_code == 429 and refused.json()["error"] == "spend_limited", refused.text


def test_idle_replicas_are_counted_among_the_replicas(tmp_path: Path, redis_url: str) -> None:
    # A replica said it was alive only when it made an LLM call: one idle for 10 s was missed by the others, which
    # each fell back to a larger share of the provider's limits than theirs when Redis went down ("this replica's
    # share 1" with two replicas running). Each replica now says so every second, busy or idle.
    import redis

    env = {"NON_REDIS_URL": redis_url}
    client = redis.Redis.from_url(redis_url)
    with (
        start_service(tmp_path / "a", tokens={"alice": ALICE}, env=env),
        start_service(tmp_path / "b", tokens={"alice": ALICE}, env=env),
    ):
        deadline = time.monotonic() + 10
        while client.zcard("nons:replicas") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.zcard("nons:replicas") == 2, "no request was made: both replicas said they were alive"
        time.sleep(2.5)
        alive_until = [score for _, score in client.zrange("nons:replicas", 0, -1, withscores=True)]
        assert all(until > time.time() + 8 for until in alive_until), "said again every second"
    client.close()
