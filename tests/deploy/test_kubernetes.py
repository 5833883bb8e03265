"""deploy/k8s/: valid against the current Kubernetes schema, and the counterparts of the deployment guide's
Kubernetes examples (quoted below as the guide writes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

# --- the guide's examples, verbatim (../shared/seed/NoN-deployment-guide.md) -----------------------------------
GUIDE_CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: non-config
data:
  NON_LOG_LEVEL: "INFO"
  NON_ENVIRONMENT: "production"
  NON_ENABLE_TRACING: "true"
"""
GUIDE_SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: non-secrets
type: Opaque
stringData:
  ANTHROPIC_API_KEY: "your-key"
  GOOGLE_API_KEY: "your-key"
"""
GUIDE_DEPLOYMENT = """
# Kubernetes Deployment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: non-app
spec:
  replicas: 5  # Scale to 5 instances
  selector:
    matchLabels:
      app: non-app
  template:
    metadata:
      labels:
        app: non-app
    spec:
      containers:
      - name: non-app
        image: non-app:latest
        resources:
          requests:
            memory: "2Gi"
            cpu: "1000m"
          limits:
            memory: "4Gi"
            cpu: "2000m"
"""
GUIDE_SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: non-app-service
spec:
  type: LoadBalancer
  selector:
    app: non-app
  ports:
  - protocol: TCP
    port: 80
    targetPort: 8000
"""


def _documents() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return _documents()


def _contains(actual: Any, expected: Any, where: str = "") -> list[str]:
    """Where ``actual`` lacks or differs from what ``expected`` says (lists: item by item)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {actual!r}"]
        return [p for key, value in expected.items() for p in _contains(actual.get(key), value, f"{where}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) < len(expected):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [p for i, value in enumerate(expected) for p in _contains(actual[i], value, f"{where}[{i}]")]
    return [] if actual == expected else [f"{where}: expected {expected!r}, got {actual!r}"]


def test_every_manifest_is_valid_against_the_current_kubernetes_schema_strictly() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    documents = _documents()
    assert len(documents) == 6
    for document in documents.values():
        # Strict: a misspelt or misplaced field is an error, not ignored.
        kubernetes_validate.validate(document, version, strict=True)
    broken = dict(documents[("Deployment", "non-app")])
    broken["spec"] = {**broken["spec"], "replica": 5}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


@pytest.mark.parametrize("guide", [GUIDE_CONFIGMAP, GUIDE_SECRET, GUIDE_DEPLOYMENT, GUIDE_SERVICE])
def test_each_guide_example_has_a_counterpart(manifests: dict[tuple[str, str], Any], guide: str) -> None:
    expected = yaml.safe_load(guide)
    actual = manifests[(expected["kind"], expected["metadata"]["name"])]
    assert _contains(actual, expected) == []


def _container(manifests: dict[tuple[str, str], Any]) -> dict[str, Any]:
    container: dict[str, Any] = manifests[("Deployment", "non-app")]["spec"]["template"]["spec"]["containers"][0]
    return container


def test_probes_check_liveness_and_readiness_on_the_service_port(manifests: dict[tuple[str, str], Any]) -> None:
    container = _container(manifests)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    # One failed readiness check takes a draining pod out of the Service.
    assert container["readinessProbe"]["failureThreshold"] == 1


def test_the_drain_fits_the_termination_grace_period(manifests: dict[tuple[str, str], Any]) -> None:
    from nons.serve.settings import KUBERNETES_GRACE_S, ServeSettings

    pod = manifests[("Deployment", "non-app")]["spec"]["template"]["spec"]
    env = {item["name"]: item["value"] for item in _container(manifests)["env"]}
    settings = ServeSettings(**{k.removeprefix("NON_SERVE_").lower(): v for k, v in env.items()})
    assert settings.shutdown_budget_s < pod["terminationGracePeriodSeconds"] == KUBERNETES_GRACE_S
    assert settings.host == "0.0.0.0"


def test_config_and_secret_reach_the_pods_and_the_config_is_valid(manifests: dict[tuple[str, str], Any]) -> None:
    from nons.serve.settings import ServeSettings

    container = _container(manifests)
    sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
    assert sources == ["non-config", "non-secrets"]
    config = manifests[("ConfigMap", "non-config")]["data"]
    serve = {k.removeprefix("NON_SERVE_").lower(): v for k, v in config.items() if k.startswith("NON_SERVE_")}
    assert set(serve) <= set(ServeSettings.model_fields), "every NON_SERVE_ variable is a setting"
    ServeSettings(**serve)
    # The dashboards' rate panels need exports more often than the SDK's default 60 s, as in docker-compose.yml.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    interval = compose["services"]["non-app"]["environment"]["OTEL_METRIC_EXPORT_INTERVAL"]
    assert config.get("OTEL_METRIC_EXPORT_INTERVAL") == interval == "15000"


def test_the_networks_configmap_is_mounted_where_the_image_reads_it_and_is_valid(
    manifests: dict[tuple[str, str], Any],
) -> None:
    from nons.spec import loads_spec

    pod = manifests[("Deployment", "non-app")]["spec"]["template"]["spec"]
    container = _container(manifests)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["networks"]["configMap"]["name"] == "non-networks"
    assert f"{mounts['networks']}/networks.yaml" == container["args"][0] == "/etc/nons/networks.yaml"
    text = manifests[("ConfigMap", "non-networks")]["data"]["networks.yaml"]
    spec = loads_spec(text, "deploy/k8s/configmap.yaml#networks.yaml")
    assert set(spec.networks) == {"answer", "triage"}
    assert [layer.width for layer in spec.networks["answer"].layers] == [5, 1]
    # The triage answers the request beside its classification, not the category's name after it.
    assert [layer.width for layer in spec.networks["triage"].layers] == [2]


def test_the_secret_template_holds_no_real_key_and_its_token_is_refused(
    manifests: dict[tuple[str, str], Any],
) -> None:
    from nons.core.types import ConfigurationError
    from nons.serve.auth import TokenTable

    data = manifests[("Secret", "non-secrets")]["stringData"]
    keys = {name: value for name, value in data.items() if name.endswith("_API_KEY")}
    assert keys and set(keys.values()) == {"your-key"}
    with pytest.raises(ConfigurationError, match="at least 16"):
        TokenTable.load(data["NON_SERVE_TOKENS"], None)


def test_pods_run_as_the_images_non_root_user_with_a_read_only_root(manifests: dict[tuple[str, str], Any]) -> None:
    pod = manifests[("Deployment", "non-app")]["spec"]["template"]["spec"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "USER 10001:10001" in dockerfile
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    security = _container(manifests)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False


def test_service_and_disruption_budget_select_the_pods(manifests: dict[tuple[str, str], Any]) -> None:
    labels = manifests[("Deployment", "non-app")]["spec"]["template"]["metadata"]["labels"]
    service = manifests[("Service", "non-app-service")]["spec"]
    budget = manifests[("PodDisruptionBudget", "non-app")]["spec"]
    assert service["selector"].items() <= labels.items()
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["maxUnavailable"] == 1 < manifests[("Deployment", "non-app")]["spec"]["replicas"]
