"""Static checks of the observability stack: compose file, collector, Prometheus and Grafana provisioning.

No Docker engine runs here, so the stack is checked in parts: files are parsed and cross-checked, and
``prometheus.yml`` goes through the real ``promtool``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_server import require_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.observability.yml"
COLLECTOR = ROOT / "otel" / "collector.yaml"
PROMETHEUS_CONFIG = ROOT / "otel" / "prometheus.yml"
PROVISIONING = ROOT / "otel" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS = PROVISIONING / "dashboards" / "nons.yaml"

REQUIRED_PORTS = {
    "otel-collector": {4317, 4318},
    "jaeger": {16686},
    "prometheus": {9090},
    "grafana": {3000},
}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _load(COMPOSE)
    return data


def _one_shot(service: dict[str, Any]) -> bool:
    # A helper that runs once and exits (restart "no"); others wait for it with service_completed_successfully.
    return str(service.get("restart", "")) == "no"


# ---------------------------------------------------------------------------------------------------- compose


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert image, f"{name}: no image"
        reference = image.split("@", 1)[0]
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} uses latest"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} is not a version"


def test_compose_uses_the_intended_images(compose: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in compose["services"].items()}
    assert images["otel-collector"].startswith("otel/opentelemetry-collector-contrib:")
    assert images["jaeger"].startswith("jaegertracing/jaeger:2.")
    assert images["prometheus"].startswith("prom/prometheus:v3.")
    # The dashboards are generated with grafana-foundation-sdk built for Grafana 11.6.
    assert images["grafana"].startswith("grafana/grafana:11.6.")


def _host_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["published"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        ports.add(int(parts[-2] if len(parts) >= 2 else parts[-1]))
    return ports


def test_compose_maps_the_required_ports(compose: dict[str, Any]) -> None:
    for name, ports in REQUIRED_PORTS.items():
        assert ports <= _host_ports(compose["services"][name]), name


def test_every_port_is_published_on_loopback_unless_nons_stack_bind_opens_it(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            assert str(entry).startswith("${NONS_STACK_BIND:-127.0.0.1}:"), f"{name}: {entry}"
    published = yaml.safe_load(interpolate(text, {"GRAFANA_ADMIN_PASSWORD": "x"}))["services"]["grafana"]["ports"]
    assert published == ["127.0.0.1:3000:3000"]
    opened = yaml.safe_load(interpolate(text, {"GRAFANA_ADMIN_PASSWORD": "x", "NONS_STACK_BIND": "0.0.0.0"}))
    assert opened["services"]["grafana"]["ports"] == ["0.0.0.0:3000:3000"]


def test_grafana_refuses_to_start_without_an_admin_password() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(text, {})
    with pytest.raises(ValueError, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(text, {"GRAFANA_ADMIN_PASSWORD": ""})
    grafana = yaml.safe_load(interpolate(text, {"GRAFANA_ADMIN_PASSWORD": "s3cret"}))["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret"


def test_compose_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if _one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name}: no healthcheck"
        assert not check.get("disable"), name
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"


def test_compose_depends_on_defined_services_with_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with a condition"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on undefined service {target}"
            condition = spec.get("condition")
            if _one_shot(services[target]):
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}"
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"


def _volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((str(entry["source"]), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            mounts.append((source, target))
    return mounts


def test_compose_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used_named = set()
    for name, service in compose["services"].items():
        for source, _target in _volume_mounts(service):
            if source.startswith((".", "/")):
                path = (ROOT / source).resolve()
                assert path.exists(), f"{name}: mounted path {source} does not exist"
                assert ROOT in path.parents or path == ROOT, f"{name}: {source} is outside the repository"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
                used_named.add(source)
    assert declared == used_named, f"declared but unused volumes: {declared - used_named}"
    assert {"prometheus-data", "grafana-data"} <= declared


_COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, environment: dict[str, str]) -> str:
    """Compose's variable interpolation: ``${VAR}``, ``${VAR:-default}``, and ``${VAR:?message}``, which stops
    compose with the message when the variable is unset or empty."""

    def value(match: re.Match[str]) -> str:
        name, kind, argument = match.groups()
        if environment.get(name):
            return environment[name]
        if kind == "?":
            raise ValueError(f"{name}: {argument}")
        return argument if kind == "-" else ""

    return _COMPOSE_VARIABLE.sub(value, text)


def test_compose_file_follows_the_compose_specification() -> None:
    # Optional: the compose-spec package validates the modern Compose Specification without a Docker engine
    # (Debian's docker-compose v1 rejects newer keys such as top-level `name`). It does not check depends_on
    # targets, which the tests above do, nor interpolate variables, which interpolate() does as compose would.
    compose_spec = pytest.importorskip("compose_spec")
    text = interpolate(COMPOSE.read_text(encoding="utf-8"), {"GRAFANA_ADMIN_PASSWORD": "a-password"})
    parsed = compose_spec.PyCompose.from_yaml(text)
    assert set(parsed.service_names()) == set(_load(COMPOSE)["services"])


def test_prometheus_keeps_exemplars(compose: dict[str, Any]) -> None:
    command = compose["services"]["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command
    assert "--config.file=/etc/prometheus/prometheus.yml" in command


def _container_path(service: dict[str, Any], host: str) -> str:
    for source, target in _volume_mounts(service):
        if (ROOT / source).resolve() == (ROOT / host).resolve():
            return target
    raise AssertionError(f"{host} is not mounted")


def test_grafana_mounts_provisioning_and_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    environment = grafana["environment"]
    assert str(environment["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert _container_path(grafana, "otel/grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_in_container = _container_path(grafana, "dashboards")
    home = environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_in_container}/nons-overview.json"
    assert (ROOT / "dashboards" / "nons-overview.json").exists()
    providers = _load(DASHBOARD_PROVIDERS)["providers"]
    assert [p["options"]["path"] for p in providers] == [dashboards_in_container]


def test_collector_config_is_mounted_where_the_command_reads_it(compose: dict[str, Any]) -> None:
    collector = compose["services"]["otel-collector"]
    target = _container_path(collector, "otel/collector.yaml")
    assert f"--config={target}" in collector["command"]
    prometheus = compose["services"]["prometheus"]
    assert _container_path(prometheus, "otel/prometheus.yml") == "/etc/prometheus/prometheus.yml"


# -------------------------------------------------------------------------------------------------- collector


_ENV_DEFAULT = re.compile(r"\$\{env:(\w+):-([^}]*)\}")


def with_env_defaults(text: str) -> str:
    """A collector config as the compose container resolves it: every ``${env:VAR:-default}`` is its default."""
    return _ENV_DEFAULT.sub(lambda match: match.group(2), text)


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(with_env_defaults(COLLECTOR.read_text(encoding="utf-8")))
    return data


def test_collector_config_takes_every_address_from_the_environment() -> None:
    """The tests run the same file with every listen address on 127.0.0.1: none may be written in literally."""
    text = COLLECTOR.read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    endpoints = [
        config["extensions"]["health_check"]["endpoint"],
        *(protocol["endpoint"] for protocol in config["receivers"]["otlp"]["protocols"].values()),
        *(exporter["endpoint"] for exporter in config["exporters"].values() if "endpoint" in exporter),
    ]
    literal = [endpoint for endpoint in endpoints if "${env:" not in endpoint]
    assert not literal, f"addresses the tests cannot move to 127.0.0.1: {literal}"
    assert "${env:" not in with_env_defaults(text)


def test_collector_pipelines_use_only_defined_components(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for signal, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in (collector.get(kind) or {}), f"{signal}: {kind[:-1]} {component} is not defined"
        assert pipeline["receivers"] and pipeline["exporters"], signal
        # memory_limiter must come first to protect everything after it.
        assert pipeline["processors"][0] == "memory_limiter", signal
    for extension in collector["service"].get("extensions", []):
        assert extension in collector.get("extensions", {}), f"extension {extension} is not defined"


def test_collector_wiring(collector: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    exporters = collector["exporters"]
    traces = collector["service"]["pipelines"]["traces"]["exporters"]
    assert [exporters[name]["endpoint"] for name in traces] == ["jaeger:4317"]
    assert all(exporters[name]["tls"]["insecure"] is True for name in traces)
    assert all(name.startswith("otlp_grpc/") for name in traces), "otlp is the deprecated name of otlp_grpc"
    prometheus = exporters["prometheus"]
    assert prometheus["endpoint"] == "0.0.0.0:8889"
    assert prometheus["enable_open_metrics"] is True
    # Not the deprecated resource_to_telemetry_conversion: an explicit list, so that a host's k8s.*, host.* and
    # process.* attributes do not become labels on every series.
    assert "resource_to_telemetry_conversion" not in prometheus
    included = prometheus["resource_constant_labels"]["included"]
    assert "service.name" in included and not any("*" in pattern for pattern in included), included
    assert collector["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]
    assert "debug" in collector["service"]["pipelines"]["logs"]["exporters"]
    assert "health_check" in collector["service"]["extensions"]


def test_prometheus_scrapes_the_collector(compose: dict[str, Any], collector: dict[str, Any]) -> None:
    config = _load(PROMETHEUS_CONFIG)
    targets = {
        target for job in config["scrape_configs"] for static in job["static_configs"] for target in static["targets"]
    }
    port = collector["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert f"otel-collector:{port}" in targets
    assert "otel-collector" in compose["services"]


def test_promtool_accepts_prometheus_config() -> None:
    result = subprocess.run(
        [require_binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------- grafana


def test_grafana_datasources_link_exemplars_to_jaeger() -> None:
    sources = {source["uid"]: source for source in _load(DATASOURCES)["datasources"]}
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["jaeger"]["type"] == "jaeger"
    assert sources["jaeger"]["url"] == "http://jaeger:16686"
    destinations = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # The collector's prometheus exporter labels exemplars with trace_id.
    assert [(d["name"], d["datasourceUid"]) for d in destinations] == [("trace_id", "jaeger")]
    assert sum(bool(source.get("isDefault")) for source in sources.values()) == 1


def test_grafana_dashboard_provider_is_a_file_provider() -> None:
    providers = _load(DASHBOARD_PROVIDERS)["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    # Dashboards come from code; edits in the UI would be lost on the next regeneration.
    assert provider["allowUiUpdates"] is False
