"""Every refusal of a running ``nons serve``: status, body naming the rule, headers, and no model call."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from service_process import ALICE, BOB, SPEC, ServiceProcess, free_port, read_until_closed, start_service

from nons.serve.limits import seconds_until_utc_midnight

pytestmark = pytest.mark.timeout(180)


def _llm_calls(metrics_url: str) -> float:
    """LLM call attempts the service has made, from its own Prometheus endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gen_ai_client_operation_duration_seconds_count"
    )


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[ServiceProcess]:
    env = {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
           "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1", "NON_SERVE_MAX_BODY_BYTES": "200000",
           "NON_SERVE_BODY_TIMEOUT_S": "2"}
    with start_service(
        tmp_path_factory.mktemp("refusals"), tokens={"alice": ALICE}, env=env, args=["--rate-limit", "1000/minute"]
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "a bearer token is required"),
        ({"Authorization": "Bearer not-a-token-we-know-of"}, "not valid"),
        ({"Authorization": f"Basic {ALICE}"}, "a bearer token is required"),
        ({"Authorization": f"Bearer {BOB}"}, "not valid"),  # a token of another service
    ],
)
def test_without_a_valid_bearer_token_it_is_401(service: ServiceProcess, headers: dict[str, str], detail: str) -> None:
    for response in (service.get("/v1/networks", headers=headers), service.run("best-of-3", "hi", token=None,
                                                                              headers=headers)):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"] == "unauthorized" and detail in response.json()["detail"]


def test_an_unknown_network_is_404(service: ServiceProcess) -> None:
    response = service.run("no-such-network", "hi")
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_network" and "GET /v1/networks" in response.json()["detail"]


def _violation(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    violation: dict[str, str] = body["violations"][0]
    return violation


@pytest.mark.parametrize(
    ("body", "rule", "field"),
    [
        ({"input": ""}, "not_empty", "input"),
        ({"input": " \n\t "}, "not_empty", "input"),
        ({"input": "x" * 50_001}, "max_length", "input"),
        ({}, "required", "input"),
        ({"input": 42}, "type", "input"),
        ({"input": ["a", "b"]}, "type", "input"),
        ({"input": "hi", "temperature": 2}, "unknown_field", "temperature"),
    ],
)
def test_bad_input_is_422_naming_the_rule(service: ServiceProcess, body: object, rule: str, field: str) -> None:
    violation = _violation(service.post("/v1/networks/best-of-3/run", body, token=ALICE))
    assert (violation["rule"], violation["field"]) == (rule, field)
    if rule == "max_length":
        assert "at most 50,000 characters" in violation["message"]


def test_the_input_is_never_echoed_back(service: ServiceProcess) -> None:
    response = service.post("/v1/networks/best-of-3/run", {"input": "secret " + "x" * 50_000}, token=ALICE)
    assert response.status_code == 422 and "secret" not in response.text
    # Nor an unknown field's name in full: it is the caller's text too.
    response = service.post("/v1/networks/best-of-3/run", {"input": "hi", "k" * 5_000 + "secret": 1}, token=ALICE)
    assert response.status_code == 422 and "secret" not in response.text
    assert _violation(response)["field"] == "k" * 64 + "…"


@pytest.mark.parametrize("content", [b"{not json", b"Y\x1c|^\xff"], ids=["not JSON", "not UTF-8"])
def test_a_body_that_is_not_json_is_422(service: ServiceProcess, content: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    response = service.request("POST", "/v1/networks/best-of-3/run", token=ALICE, content=content, headers=headers)
    assert (_violation(response)["rule"], _violation(response)["field"]) == ("json", "body")


def test_a_json_body_sent_as_a_form_is_422_saying_which_content_type_to_send(service: ServiceProcess) -> None:
    # What `curl -d '{"input": "hi"}'` sends: the JSON under a form's content type.
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = service.request(
        "POST", "/v1/networks/best-of-3/run", token=ALICE, content=b'{"input": "hi"}', headers=headers
    )
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["detail"]
    assert "application/x-www-form-urlencoded" in response.json()["detail"]
    # A content type is the caller's text too: not repeated whole.
    headers = {"Content-Type": "text/plain; " + "x" * 6_000}
    response = service.request("POST", "/v1/networks/best-of-3/run", token=ALICE, content=b"{}", headers=headers)
    assert response.status_code == 422 and len(response.json()["detail"]) < 500


def test_unknown_paths_and_methods_answer_in_the_same_error_body(service: ServiceProcess) -> None:
    missing = service.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = service.request("DELETE", "/v1/networks", token=ALICE)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_a_network_limit_below_the_service_limit_is_422_from_the_engine(service: ServiceProcess) -> None:
    violation = _violation(service.run("short", "more than ten characters"))
    assert violation["rule"] == "max_length" and "over the limit of 10" in violation["message"]


def test_a_body_over_the_size_limit_is_413_declared_or_streamed(service: ServiceProcess) -> None:
    big = b'{"input": "' + b"x" * 300_000 + b'"}'
    declared = service.request("POST", "/v1/networks/best-of-3/run", token=ALICE, content=big)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    streamed = service.request("POST", "/v1/networks/best-of-3/run", token=ALICE, content=chunks())
    for response in (declared, streamed):
        assert response.status_code == 413 and response.json()["error"] == "body_too_large"


def test_a_body_that_does_not_arrive_in_time_is_408(service: ServiceProcess) -> None:
    # Before, a client that sent its headers and a byte now and then held its connection (and a file
    # descriptor) for as long as it liked: a few hundred such clients, without a token, stopped the service.
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/networks/best-of-3/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"input": ')  # fmt: skip
        answer = read_until_closed(sock)
        waited = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 408") and '"error":"body_timeout"' in answer
    assert "within 2 s" in answer and 1.5 < waited < 10


def test_a_422_names_at_most_20_violations(service: ServiceProcess) -> None:
    # 100,000 unknown fields answered 12 MB, and held the event loop 1.6 s building it.
    body = {"input": "hi", **{f"f{i}": 1 for i in range(5_000)}}
    response = service.post("/v1/networks/best-of-3/run", body, token=ALICE)
    assert response.status_code == 422 and len(response.json()["violations"]) == 20
    assert response.json()["detail"].endswith("; and 4,980 more") and len(response.content) < 10_000


@pytest.mark.parametrize(
    "content", [b"[" * 100_000 + b"]" * 100_000, b'{"input": ' + b"9" * 5_000 + b"}"], ids=["nested", "long number"]
)
def test_json_that_python_cannot_read_is_422_saying_why(service: ServiceProcess, content: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    response = service.request("POST", "/v1/networks/best-of-3/run", token=ALICE, content=content, headers=headers)
    assert _violation(response)["rule"] == "json"
    assert "nests too deeply or has a number too long" in _violation(response)["message"]


def test_no_refused_request_reached_a_model(service: ServiceProcess, metrics_port: int) -> None:
    # Runs after the refusals above (pytest keeps file order); then one admitted run makes three calls.
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert _llm_calls(metrics_url) == 0
    assert service.run("best-of-3", "hi").status_code == 200
    assert _llm_calls(metrics_url) == 3


def test_over_the_rate_limit_is_429_with_a_retry_after_that_holds(tmp_path: Path) -> None:
    window = 4.0
    with start_service(tmp_path, tokens={"alice": ALICE, "bob": BOB}, args=["--rate-limit", "2 per 4 seconds"]) as svc:
        sent = time.time()
        first = svc.run("best-of-3", "one")
        received = time.time()
        assert first.status_code == 200 and svc.run("best-of-3", "two").status_code == 200
        asked = time.time()
        refused = svc.run("best-of-3", "three")
        answered = time.time()
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        retry_after = int(refused.headers["Retry-After"])
        # The window frees its first slot `window` seconds after the first request was counted, which happened
        # between `sent` and `received`; the refusal was decided between `asked` and `answered`.
        assert max(1, math.ceil(sent + window - answered)) <= retry_after <= math.ceil(received + window - asked)
        assert svc.run("best-of-3", "other caller", token=BOB).status_code == 200, "limits are per caller"
        time.sleep(retry_after)
        assert svc.run("best-of-3", "four").status_code == 200, "admitted once Retry-After has passed"


def test_over_the_daily_spend_is_429_until_midnight_utc(tmp_path: Path) -> None:
    args = ["--spend-limit-usd-per-day", "0.000001", "--rate-limit", "100/minute"]
    with start_service(tmp_path, tokens={"alice": ALICE, "bob": BOB}, args=args) as svc:
        assert svc.run("best-of-3", "the first run costs more than the limit").status_code == 200
        before = datetime.now(timezone.utc)
        refused = svc.run("best-of-3", "again")
        after = datetime.now(timezone.utc)
        assert refused.status_code == 429 and refused.json()["error"] == "spend_limited"
        # The limit as given, not rounded to four decimals ($0.0000 before).
        assert "today (UTC), the limit is $0.000001 a day" in refused.json()["detail"]
        retry_after = int(refused.headers["Retry-After"])
        earliest, latest = seconds_until_utc_midnight(after), seconds_until_utc_midnight(before)
        assert math.ceil(earliest) <= retry_after <= math.ceil(latest)
        assert svc.run("best-of-3", "another caller has its own budget", token=BOB).status_code == 200


FAILING_LATE = """\
  spends-then-fails:
    layers: ["generate@sim", "generate@broken"]
  spends-then-times-out:
    timeout_seconds: 0.3
    layers: ["generate@sim", "generate@slow"]
"""


@pytest.mark.parametrize(("network", "status", "error"), [("spends-then-fails", 502, "network_failed"),
                                                          ("spends-then-times-out", 504, "network_timeout")])
def test_what_a_failed_run_spent_counts_toward_the_daily_spend(
    tmp_path: Path, network: str, status: int, error: str
) -> None:
    args = ["--spend-limit-usd-per-day", "0.000001", "--rate-limit", "100/minute"]
    with start_service(tmp_path, SPEC + FAILING_LATE, tokens={"alice": ALICE}, args=args) as svc:
        # A failed call is not billed: a run whose only call failed spends nothing, and the next is admitted.
        assert svc.run("failing", "hi").status_code == 502
        # This one's first layer answered (and was billed) before its second failed or ran out of time.
        failed = svc.run(network, "hi")
        assert failed.status_code == status and failed.json()["error"] == error
        refused = svc.run("best-of-3", "again")
        assert refused.status_code == 429 and refused.json()["error"] == "spend_limited"


def _refusal_counts(metrics_url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10).text
    return {
        sample.labels["nons_refusal_reason"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "nons_serve_refusals_total"
    }


def test_every_refusal_is_counted_with_its_reason(tmp_path: Path) -> None:
    port = free_port()
    env = {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
           "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1", "NON_SERVE_MAX_BODY_BYTES": "1000"}
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    args = ["--rate-limit", "2/minute", "--spend-limit-usd-per-day", "0.000001", "--drain-delay", "30"]
    with start_service(tmp_path / "a", tokens={"alice": ALICE, "bob": BOB}, env=env, args=args) as service:
        service.get("/v1/networks")  # unauthorized
        service.run("nope", "hi")  # unknown_network: checked before the limits, so it does not count
        service.request("POST", "/v1/networks/best-of-3/run", token=BOB, content=b"x" * 2000)  # body_too_large
        service.run("best-of-3", "   ", token=BOB)  # invalid_input: bob's first request this minute
        assert service.run("best-of-3", "hi", token=BOB).status_code == 200  # spends more than the limit
        service.run("best-of-3", "hi", token=BOB)  # rate_limited: bob's third
        assert service.run("best-of-3", "hi").status_code == 200
        service.run("best-of-3", "hi")  # spend_limited: alice's second, after her first spent the budget
        service.signal()
        service.run("best-of-3", "hi")  # draining
        counts = _refusal_counts(metrics_url)
    assert counts == {
        "unauthorized": 1, "unknown_network": 1, "body_too_large": 1, "invalid_input": 1,
        "rate_limited": 1, "spend_limited": 1, "draining": 1,
    }
    port = free_port()
    env["OTEL_EXPORTER_PROMETHEUS_PORT"] = str(port)
    dead = ["--limits-storage", f"redis://127.0.0.1:{free_port()}"]
    with start_service(tmp_path / "b", tokens={"alice": ALICE}, env=env, args=dead) as service:
        service.run("best-of-3", "hi")
        assert _refusal_counts(f"http://127.0.0.1:{port}/metrics") == {"limits_unavailable": 1}
