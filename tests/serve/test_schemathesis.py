"""Schemathesis against the service's own OpenAPI document: no 5xx, and no response that breaks the schema.

The service runs the networks the container image serves by default (deploy/networks.yaml). Every check
schemathesis has is on (``--checks all``): server errors, status codes, content types, headers and bodies
against the schema, rejection of invalid data, acceptance of valid data, and authentication that is not
ignored. The seed is fixed so that a failure reproduces; run ``schemathesis run`` by hand with more examples
to explore further.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from service_process import ALICE, start_service

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    spec = (ROOT / "deploy" / "networks.yaml").read_text(encoding="utf-8")
    with start_service(tmp_path, spec, tokens={"alice": ALICE}, args=["--rate-limit", "100000/minute"]) as service:
        completed = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"), "run", f"{service.url}/openapi.json",
                "--checks", "all",
                "--header", f"Authorization: Bearer {ALICE}",
                "--max-examples", "60",
                "--seed", "20261201",
                "--generation-database", "none",
                "--workers", "1",
                "--no-color",
                "--report", "junit", "--report-dir", str(tmp_path / "report"),
            ],
            capture_output=True, text=True, timeout=540, check=False,
        )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-2000:]
    assert "No issues found" in completed.stdout
    assert "Tested: 4" in completed.stdout, "every operation was exercised"
