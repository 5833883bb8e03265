"""The compose images are the releases the tests build and run, and the built programs accept the configs.

``stack/releases.txt`` names each program's release and the Go module version it is built from. The compose
tags, the go.mod files and (when built) the binaries' own version output must all agree with it, so that what
the end-to-end tests prove is about the images users run.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from otel_stack import COLLECTOR_CONFIG, JAEGER_CONFIG, ROOT, require_stack_binary

COMPOSE = ROOT / "docker-compose.observability.yml"
RELEASES = ROOT / "stack" / "releases.txt"

#: Program -> (compose service, image repository, tag as the image spells the release).
IMAGES = {
    "otelcol": ("otel-collector", "otel/opentelemetry-collector-contrib", "{release}"),
    "jaeger": ("jaeger", "jaegertracing/jaeger", "{release}"),
    "prometheus": ("prometheus", "prom/prometheus", "v{release}"),
}


def releases() -> dict[str, dict[str, str]]:
    rows = {}
    for line in RELEASES.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, release, directory, module, version, package = line.split()
            rows[name] = {
                "release": release,
                "dir": directory,
                "module": module,
                "version": version,
                "package": package,
            }
    return rows


def compose_images() -> dict[str, str]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return {name: str(service["image"]) for name, service in compose["services"].items()}


def test_releases_cover_the_stack_programs() -> None:
    assert set(releases()) == set(IMAGES)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_compose_image_is_the_built_release(name: str) -> None:
    service, repository, tag = IMAGES[name]
    expected = f"{repository}:{tag.format(release=releases()[name]['release'])}"
    assert compose_images()[service] == expected


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_go_module_requires_the_release(name: str) -> None:
    row = releases()[name]
    go_mod = (ROOT / "stack" / row["dir"] / "go.mod").read_text(encoding="utf-8")
    required = re.search(rf"^\s*{re.escape(row['module'])} (v\S+)", go_mod, re.MULTILINE)
    assert required is not None and required.group(1) == row["version"], (row, required)
    assert (ROOT / "stack" / row["dir"] / "go.sum").exists()


def test_collector_modules_are_all_at_one_release() -> None:
    go_mod = (ROOT / "stack" / "otelcol" / "go.mod").read_text(encoding="utf-8")
    versions = set(
        re.findall(
            r"^\s*(?:go\.opentelemetry\.io/collector|github\.com/open-telemetry/opentelemetry-collector-contrib)"
            r"\S* (v\S+)",
            go_mod,
            re.MULTILINE,
        )
    )
    # The collector's unstable modules are v0.N.x, its stable ones v1.M.x of the same release.
    assert versions == {"v0.165.0", "v1.71.0"}, versions


def test_grafana_is_the_line_the_dashboards_are_generated_for() -> None:
    sdk = importlib.metadata.version("grafana-foundation-sdk").split("!")[-1]  # "1769699379!11.6.0" -> "11.6.0"
    line = ".".join(sdk.split(".")[:2])
    image = compose_images()["grafana"]
    assert re.fullmatch(rf"grafana/grafana:{re.escape(line)}\.\d+", image), (image, sdk)


def _version_output(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return result.stdout + result.stderr


@pytest.mark.integration
def test_built_programs_report_the_releases() -> None:
    rows = releases()
    otelcol = _version_output([require_stack_binary("otelcol"), "--version"])
    assert f"version {rows['otelcol']['release']}" in otelcol
    jaeger = _version_output([require_stack_binary("jaeger"), "version"])
    assert f'"gitVersion":"v{rows["jaeger"]["release"]}"' in jaeger
    prometheus = _version_output([require_stack_binary("prometheus"), "--version"])
    assert f"prometheus, version {rows['prometheus']['release']} " in prometheus


@pytest.mark.integration
@pytest.mark.parametrize(("name", "config"), [("otelcol", COLLECTOR_CONFIG), ("jaeger", JAEGER_CONFIG)])
def test_built_program_validates_the_config_compose_mounts(name: str, config: Path) -> None:
    """``validate`` resolves the ``${env:...}`` defaults (the container's addresses) and builds every component."""
    argv = [require_stack_binary(name), "validate", f"--config={config}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
