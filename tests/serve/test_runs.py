"""A run for a request: a caller that closes its connection cancels its run, which is recorded as such and still
charged for what it spent, over real HTTP to a running ``nons serve``; in process, a server that cannot report a
disconnect, and a request its server cancels, which still charges its spend and waits for the record."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from otlp_receiver import attributes
from service_process import ALICE, SPEC, ServiceProcess, otlp_env, start_service

from nons.core.network import NoN
from nons.core.node import Node
from nons.core.scheduler import get_scheduler
from nons.core.types import ModelConfig, ModelProvider, NetworkResult
from nons.serve.runs import ServiceState, run_for_request
from nons.serve.settings import CUT_RUNS_SETTLE_S, KUBERNETES_GRACE_S, SCHEDULER_STOP_S, ServeSettings

pytestmark = pytest.mark.timeout(180)

SERVER = 2  # SpanKind SERVER in OTLP
ERROR = 2  # StatusCode ERROR in OTLP

SPENDS_THEN_HANGS = SPEC + """\
  spends-then-hangs:
    layers:
      - generate@sim
      - {operator: generate, model: {model: mock/gpt-4o-mini, extra_params: {mock_latency_s: 120}}}
"""


def _in_flight(service: ServiceProcess) -> int:
    count: int = service.get("/readyz").json()["in_flight_requests"]
    return count


def _leave_after(service: ServiceProcess, seconds: float) -> None:
    """Ask for a run of spends-then-hangs and close the connection after ``seconds`` without an answer."""
    with suppress_http_instrumentation(), pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{service.url}/v1/networks/spends-then-hangs/run", json={"input": "hi"},
            headers={"Authorization": f"Bearer {ALICE}"}, timeout=httpx.Timeout(10, read=seconds),
        )


def test_a_client_that_leaves_cancels_its_run_which_is_recorded_and_charged(
    tmp_path: Path, otlp_receiver: Any
) -> None:
    args = ["--spend-limit-usd-per-day", "0.000001", "--rate-limit", "100/minute"]
    env = otlp_env(otlp_receiver)
    with start_service(tmp_path, SPENDS_THEN_HANGS, tokens={"alice": ALICE}, args=args, env=env) as service:
        left = time.monotonic()
        _leave_after(service, 1.5)
        # The run would wait 120 s for its second layer's call: it ends as soon as the server sees the client go.
        while _in_flight(service) != 0:
            assert time.monotonic() - left < 10, "the run went on after its client left"
            time.sleep(0.05)
        # Its first layer's call answered, and was paid for, before the client left: the caller's spend has it.
        refused = service.run("best-of-3", "again")
        assert refused.status_code == 429 and refused.json()["error"] == "spend_limited", refused.text
        assert service.terminate() == 0

    spans = [span for _, _, span in otlp_receiver.spans()]
    (network,) = [s for s in spans if s.name == "invoke_workflow spends-then-hangs"]
    assert network.status.code == ERROR and attributes(network.attributes)["error.type"] == "cancelled"
    assert (network.end_time_unix_nano - network.start_time_unix_nano) / 1e9 < 10
    (server,) = [s for s in spans if s.kind == SERVER and s.trace_id == network.trace_id]
    server_attributes = attributes(server.attributes)
    status = server_attributes.get("http.response.status_code", server_attributes.get("http.status_code"))
    assert status == 499, "recorded as a request its client closed, not as an answer"


async def test_a_server_that_cannot_report_a_disconnect_lets_the_run_finish_without_spinning() -> None:
    # The ASGI contract says the next message after the body is http.disconnect; a server that answers anything
    # else at once would have the watcher ask again and again, holding the event loop for the whole run.
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    charged: list[float] = []

    async def charge(usd: float, unpriced: int) -> None:
        charged.append(usd)

    slow = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_latency_s": 0.3})
    network = NoN.from_operators([Node("generate", model_config=slow)])
    state = ServiceState()
    result = await run_for_request(network, "hi", state, "alice", receive, charge)
    assert isinstance(result, NetworkResult) and result.output
    assert asked == 1, "asked once, then left the run to finish"
    assert charged == [result.cost_usd] and result.cost_usd > 0
    assert state.in_flight == 0


async def test_a_run_charges_how_many_of_its_calls_had_no_known_price() -> None:
    # What the spend limit cannot count is said (CallerLimits warns once per network): the charge is told.
    charged: list[tuple[float, int]] = []

    async def charge(usd: float, unpriced: int) -> None:
        charged.append((usd, unpriced))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    local = ModelConfig(provider=ModelProvider.MOCK, model_name="my-local-llama")
    priced = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    network = NoN.from_operators([[Node("generate", model_config=local), Node("generate", model_config=priced)]])
    result = await run_for_request(network, "hi", ServiceState(), "alice", receive, charge)
    assert isinstance(result, NetworkResult) and result.unpriced_calls == 1
    assert charged == [(result.cost_usd, 1)] and result.cost_usd > 0


def _spends_then_hangs() -> NoN:
    """A network whose first layer answers (and costs) at once and whose second waits two minutes."""
    quick = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    hangs = replace(quick, extra_params={"mock_latency_s": 120})
    return NoN.from_operators([Node("generate", model_config=quick), Node("generate", model_config=hangs)])


async def _never_disconnects() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_a_request_cancelled_by_its_server_still_charges_what_its_run_spent() -> None:
    # Not at shutdown: a server other than uvicorn, or a middleware's timeout, cancels the request's task.
    charged: list[float] = []

    async def charge(usd: float, unpriced: int) -> None:
        charged.append(usd)

    state = ServiceState()
    answered = get_scheduler().get_stats()["completed"]
    request = asyncio.ensure_future(
        run_for_request(_spends_then_hangs(), "hi", state, "alice", _never_disconnects, charge)
    )
    # Cancelled once the first layer has answered and the second's call waits.
    while (stats := get_scheduler().get_stats())["completed"] == answered or not stats["in_flight"]:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert len(charged) == 1 and charged[0] > 0, "the first layer's call was paid for"
    assert state.in_flight == 0


async def test_a_request_cancelled_while_its_spend_is_recorded_waits_for_the_record() -> None:
    recording = asyncio.Event()
    recorded: list[float] = []

    async def slow_charge(usd: float, unpriced: int) -> None:
        recording.set()
        await asyncio.sleep(0.3)  # a round trip to a shared limits storage
        recorded.append(usd)

    state = ServiceState()
    answers = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
    network = NoN.from_operators([Node("generate", model_config=answers)])
    request = asyncio.ensure_future(run_for_request(network, "hi", state, "alice", _never_disconnects, slow_charge))
    await recording.wait()  # the run has answered; its spend is being recorded
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert len(recorded) == 1 and recorded[0] > 0, "the record was finished, not cut"
    assert state.in_flight == 0


async def test_a_shutdown_that_cannot_wait_for_a_cut_run_s_spend_says_so(caplog: pytest.LogCaptureFixture) -> None:
    state = ServiceState(in_flight=1)  # a cut run still recording its spend (a slow limits storage)
    with caplog.at_level(logging.WARNING, logger="nons.serve"):
        await state.settle(timeout_s=0.05)
    assert "1 run(s) had not recorded their spend 0.05 s after the shutdown cut them" in caplog.text


def test_the_default_shutdown_fits_kubernetes_grace_period_with_the_settling_and_the_scheduler_s_stop() -> None:
    settings = ServeSettings()
    parts = settings.drain_delay_s + settings.grace_period_s + CUT_RUNS_SETTLE_S + SCHEDULER_STOP_S
    assert settings.shutdown_budget_s == parts + settings.telemetry_flush_s == 29.5 < KUBERNETES_GRACE_S
