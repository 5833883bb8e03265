"""docker-compose.yml: the app beside the observability stack, wired to its collector (checked statically: no
Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
STACK = ROOT / "docker-compose.observability.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def app(compose: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"]["non-app"]
    return service


def test_it_follows_the_compose_specification_and_includes_the_stack(compose: dict[str, Any]) -> None:
    import compose_spec

    parsed = compose_spec.PyCompose.from_yaml(COMPOSE.read_text(encoding="utf-8"))
    assert parsed.service_names() == ["non-app"]
    assert compose["include"] == [STACK.name] and STACK.exists()


def test_the_app_and_the_stack_alone_are_one_project(compose: dict[str, Any]) -> None:
    # The stack alone (the README's first command) was project "nons-observability" and the app's file project
    # "nons": the second `up` started a second stack on the same ports, with volumes of its own.
    stack = yaml.safe_load(STACK.read_text(encoding="utf-8"))
    assert compose["name"] == stack["name"] == "nons"


def test_the_app_is_built_here_and_listens_on_8000(app: dict[str, Any]) -> None:
    assert app["build"] == "." and (ROOT / "Dockerfile").exists()
    assert app["image"] == "non-app:latest"
    assert app["ports"] == ["8000:8000"]


def test_the_app_sends_its_telemetry_to_the_stacks_collector(app: dict[str, Any]) -> None:
    stack = yaml.safe_load(STACK.read_text(encoding="utf-8"))
    collector = yaml.safe_load((ROOT / "otel" / "collector.yaml").read_text(encoding="utf-8"))
    env = app["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert "otel-collector" in stack["services"]
    # The collector's config takes its port from ${env:NONS_OTLP_GRPC_PORT:-4317}; the compose stack sets no such
    # variable for the collector, so the default is the port it listens on.
    grpc = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    collector_env = stack["services"]["otel-collector"].get("environment", {})
    assert "NONS_OTLP_GRPC_PORT" not in collector_env
    port = re.fullmatch(r".*:(?:\$\{env:NONS_OTLP_GRPC_PORT:-)?(\d+)\}?", grpc)
    assert port is not None and port.group(1) == "4317", grpc
    assert app["depends_on"] == {"otel-collector": {"condition": "service_healthy"}}


def test_tokens_are_required_and_keys_pass_through_unset(app: dict[str, Any]) -> None:
    env = app["environment"]
    assert env["NON_SERVE_TOKENS"].startswith("${NON_SERVE_TOKENS:?"), "compose refuses to start without tokens"
    # A key without a value is taken from the shell, or left unset: never an empty key.
    assert all(env[name] is None for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY"))


def test_the_spec_is_mounted_where_the_image_reads_it(app: dict[str, Any]) -> None:
    (mount,) = app["volumes"]
    source, target, mode = mount.split(":")
    assert (ROOT / source).is_file() and target == "/etc/nons/networks.yaml" and mode == "ro"
    assert json.loads((ROOT / "Dockerfile").read_text(encoding="utf-8").split("\nCMD ")[1].splitlines()[0]) == [target]


def test_the_health_check_and_stop_grace_match_the_image(app: dict[str, Any]) -> None:
    from nons.serve.settings import KUBERNETES_GRACE_S, ServeSettings

    assert "/healthz" in app["healthcheck"]["test"][-1]
    assert app["stop_grace_period"] == "30s" and ServeSettings().shutdown_budget_s < KUBERNETES_GRACE_S
