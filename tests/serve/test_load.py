"""The load benchmark (bench/bench_serve.py) runs end to end: every request answered, a clean exit. Its
figures are printed, never asserted: speed is measured in bench/, not tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from service_process import require_program

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_load_run_answers_every_request_and_reports_its_figures() -> None:
    require_program("wrk", "wrk")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_serve.py"), "--callers", "20", "--seconds", "2",
         "--sequential-seconds", "2"],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "errors: 0" in out and "service exit code after SIGTERM: 0" in out
    for figure in ("p50 ms", "p99 ms", "req/s", "overhead per request over forward()", "peak RSS"):
        assert figure in out
