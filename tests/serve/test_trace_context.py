"""Server spans come from the FastAPI instrumentation, and a caller's ``traceparent`` makes the network's trace
a child of the caller's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from service_process import ALICE, BOB, otlp_env, start_service

pytestmark = pytest.mark.timeout(120)

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
SERVER = 2  # SpanKind SERVER in OTLP


def _by_trace(receiver: Any, trace_id: str) -> list[Any]:
    return [span for _, _, span in receiver.spans() if span.trace_id.hex() == trace_id]


def test_the_network_trace_is_a_child_of_the_callers(tmp_path: Path, otlp_receiver: Any) -> None:
    with start_service(tmp_path, tokens={"alice": ALICE}, env=otlp_env(otlp_receiver)) as service:
        headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        response = service.run("best-of-3", "hi", headers=headers)
        assert response.status_code == 200 and response.json()["trace_id"] == CALLER_TRACE
        otlp_receiver.wait_for(
            lambda r: any(s.name.startswith("invoke_workflow") for s in _by_trace(r, CALLER_TRACE))
            and any(s.kind == SERVER for s in _by_trace(r, CALLER_TRACE))
        )
    spans = _by_trace(otlp_receiver, CALLER_TRACE)
    (server,) = [s for s in spans if s.kind == SERVER]
    assert server.name == "POST /v1/networks/{name}/run"
    assert server.parent_span_id.hex() == CALLER_SPAN, "the server span continues the caller's trace"
    (network,) = [s for s in spans if s.name == "invoke_workflow best-of-3"]
    assert network.parent_span_id == server.span_id, "the network pass runs inside the request's span"
    chats = [s for s in spans if s.name == "chat gpt-4o-mini"]
    assert len(chats) == 3
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s is not server), "every other span is inside the trace"


def test_without_a_traceparent_each_request_starts_its_own_trace_and_probes_are_not_traced(
    tmp_path: Path, otlp_receiver: Any
) -> None:
    with start_service(tmp_path, tokens={"alice": ALICE}, env=otlp_env(otlp_receiver)) as service:
        for _ in range(3):
            assert service.get("/healthz").status_code == 200 and service.get("/readyz").status_code == 200
        trace_id = service.run("best-of-3", "hi").json()["trace_id"]
        assert trace_id != CALLER_TRACE
        otlp_receiver.wait_for(lambda r: any(s.kind == SERVER for s in _by_trace(r, trace_id)))
    (server,) = [s for s in _by_trace(otlp_receiver, trace_id) if s.kind == SERVER]
    assert server.parent_span_id == b""
    names = {span.name for _, _, span in otlp_receiver.spans()}
    assert not any("healthz" in name or "readyz" in name for name in names)


def test_a_large_body_does_not_make_later_requests_on_its_connection_part_of_its_trace(tmp_path: Path) -> None:
    # Over 64 KiB, uvicorn stops reading the connection until the body is read; the read that resumes it ran in
    # the request's context, and every later request on that keep-alive connection became part of this one's
    # trace (another caller's too, behind a proxy that pools connections), its own traceparent ignored.
    big = json.dumps({"input": "\u00e9" * 40_000}).encode()  # 240 kB as JSON's escapes
    with start_service(tmp_path, tokens={"alice": ALICE, "bob": BOB}) as service, httpx.Client(timeout=60) as client:
        url = f"{service.url}/v1/networks/best-of-3/run"

        def run(token: str, **kwargs: Any) -> str:
            response = client.post(url, headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
                                   **kwargs)  # fmt: skip
            assert response.status_code == 200, response.text
            trace_id: str = response.json()["trace_id"]
            return trace_id

        with suppress_http_instrumentation():
            first = run(ALICE, content=big, headers={"Content-Type": "application/json"})
            later = [run(ALICE, json={"input": f"question {i}"}) for i in range(3)]
            bobs = run(BOB, json={"input": "bob's question"})
            joined = run(ALICE, json={"input": "x"}, headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    assert len({first, *later, bobs}) == 5, "each request on the connection starts its own trace"
    assert joined == CALLER_TRACE
