"""The generated dashboards conform to Grafana's own schema: the npm package ``@grafana/schema`` at the release of
the compose file's Grafana image, checked by the TypeScript compiler.

Each dashboard becomes a TypeScript object literal typed as the schema's ``Dashboard`` (with its string enums
spelled as their JSON values), so ``tsc`` rejects a key the schema does not know and a value of the wrong type.
``scripts/grafana-schema`` installs both packages into a cache outside the repository (``.ci/run`` calls it);
without them the test skips, and fails in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from otel_stack import ROOT, in_ci

from nons.observability.dashboards import build_dashboards

pytestmark = pytest.mark.integration

# String enums (ThresholdsMode, ...) are TypeScript enums, to which JSON strings are not assignable: Wire<T>
# replaces each by the union of its values, recursively, keeping optional keys and excess-property checks.
_PRELUDE = """import type { Dashboard } from "@grafana/schema";
type Wire<T> = T extends string ? `${T}` : T extends Array<infer U> ? Array<Wire<U>>
  : T extends object ? { [K in keyof T]: Wire<T[K]> } : T;
"""


def _schema_dir() -> Path:
    """Where scripts/grafana-schema installed the packages (it prints the same folder)."""
    configured = os.environ.get("NONS_GRAFANA_SCHEMA")
    if configured:
        return Path(configured)
    compose = (ROOT / "docker-compose.observability.yml").read_text(encoding="utf-8")
    version = compose.split("image: grafana/grafana:", 1)[1].split()[0]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nons" / "grafana-schema" / f"{version}-ts5.9.3"


def test_dashboards_conform_to_grafanas_schema(tmp_path: Path) -> None:
    schema = _schema_dir()
    tsc = schema / "node_modules" / ".bin" / "tsc"
    if not tsc.exists() or not (schema / "node_modules" / "@grafana" / "schema").exists():
        message = f"@grafana/schema and typescript are not installed in {schema}; run scripts/grafana-schema"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    files = []
    for name, model in build_dashboards().items():
        source = tmp_path / name.replace(".json", ".ts").replace("-", "_")
        source.write_text(f"{_PRELUDE}export const dashboard: Wire<Dashboard> = {json.dumps(model)};\n")
        files.append(source.name)
    (tmp_path / "node_modules").symlink_to(schema / "node_modules")
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "moduleResolution": "node",
            "module": "esnext",
            "target": "es2020",
            "skipLibCheck": True,
        },
        "files": files,
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        [str(tsc), "-p", "tsconfig.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
