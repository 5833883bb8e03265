"""Every endpoint of a running ``nons serve``, over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_process import ALICE, BOB, ServiceProcess, start_service

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with start_service(
        tmp_path_factory.mktemp("serve"),
        tokens={"alice": ALICE, "bob": BOB},
        args=["--rate-limit", "1000/minute"],
    ) as running:
        yield running


def test_healthz_is_liveness(service: ServiceProcess) -> None:
    response = service.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_the_scheduler(service: ServiceProcess) -> None:
    response = service.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["draining"] is False and body["scheduler_running"] is True
    assert body["queue_size"] == 0 and body["open_breakers"] == [] and body["paused"] == {}


def test_networks_lists_names_descriptions_and_structure(service: ServiceProcess) -> None:
    response = service.get("/v1/networks", token=ALICE)
    assert response.status_code == 200
    networks = {n["name"]: n for n in response.json()["networks"]}
    assert set(networks) == {"best-of-3", "classify", "slow", "short", "failing", "timeout"}
    best = networks["best-of-3"]
    assert best["description"] == "three answers and a vote"
    layers = best["structure"]["layers"]
    assert [layer["width"] for layer in layers] == [3, 1, 1]
    assert layers[0]["nodes"][0]["model"] == {
        "provider": "mock", "model_name": "gpt-4o-mini", "extra_params": {"mock_seed": 7}
    }


def test_run_returns_output_cost_usage_duration_and_trace_id(service: ServiceProcess) -> None:
    response = service.run("best-of-3", "  What is a compound AI system?  ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["network"] == "best-of-3"
    assert isinstance(body["output"], str) and "compound AI system" in body["output"], "the input was trimmed"
    assert body["llm_calls"] == 3 and body["cost_usd"] > 0 and body["unpriced_calls"] == 0
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["unreported_calls"] == 0  # every call reported its usage: the counts are whole
    assert body["duration_s"] > 0
    assert isinstance(body["trace_id"], str) and len(body["trace_id"]) == 32


def test_structured_outputs_come_back_as_objects(service: ServiceProcess) -> None:
    body = service.run("classify", "Is the sky blue?").json()
    assert body["output"]["category"] in ("question", "statement")
    assert set(body["output"]) == {"category", "confidence", "reasoning"}


def test_a_failing_network_is_a_502_with_the_error_and_trace(service: ServiceProcess) -> None:
    response = service.run("failing", "hello")
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "network_failed" and "ServerError" in body["detail"] and len(body["trace_id"]) == 32


def test_a_network_over_its_timeout_is_a_504(service: ServiceProcess) -> None:
    response = service.run("timeout", "hello")
    assert response.status_code == 504 and response.json()["error"] == "network_timeout"


def test_openapi_document_and_docs_pages(service: ServiceProcess) -> None:
    spec = service.get("/openapi.json").json()
    assert spec["info"]["title"] == "NoN service"
    run = spec["paths"]["/v1/networks/{name}/run"]["post"]
    assert {"200", "401", "404", "413", "422", "429", "502", "503", "504"} <= set(run["responses"])
    body_schema = spec["components"]["schemas"]["RunRequest"]["properties"]["input"]
    assert body_schema["maxLength"] == 50_000 and body_schema["pattern"] == r"\S"
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    for page in ("/docs", "/redoc"):
        response = service.get(page)
        assert response.status_code == 200 and "openapi.json" in response.text


def test_readyz_reports_open_breakers_and_paused_providers(tmp_path: Path) -> None:
    spec = """\
networks:
  broken:
    layers: [{operator: generate, model: {model: mock/gpt-4o, extra_params: {mock_failure_rate: 1.0}}}]
  throttled:
    layers:
      - operator: generate
        model:
          model: mock/gpt-4.1-mini
          extra_params: {mock_failure_rate: 1.0, mock_failure_kind: rate_limit, mock_retry_after_s: 600}
"""
    with start_service(tmp_path, spec, tokens={"alice": ALICE}, args=["--rate-limit", "1000/minute"]) as service:
        for _ in range(5):  # five consecutive server errors open the model's breaker
            assert service.run("broken", "hi").status_code == 502
        # A 429 with a retry hint pauses the provider for every caller (so it comes last here).
        assert service.run("throttled", "hi").status_code == 502
        response = service.get("/readyz")
    # An open breaker or a pause is reported, not a reason to take the replica out of the load balancer: every
    # replica shares the provider, so all of them would go at once.
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["open_breakers"] == ["mock/gpt-4o"]
    assert set(body["paused"]) == {"mock"} and 0 < body["paused"]["mock"] <= 600


def test_an_answer_ending_in_half_an_emoji_is_served_with_a_replacement_character(tmp_path: Path) -> None:
    # A model cut short mid-character sends a lone surrogate, which JSON cannot carry as UTF-8: the answer is
    # served, not lost to a 500.
    spec = """\
version: 1
models:
  cut: {model: mock/gpt-4o-mini, extra_params: {mock_responses: ["truncated answer \\ud83d"]}}
networks:
  cut:
    layers: ["generate@cut"]
"""
    with start_service(tmp_path, spec, tokens={"alice": ALICE}) as running:
        response = running.run("cut", "hello")
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "truncated answer \ufffd"
