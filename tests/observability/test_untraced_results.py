"""A pass that made no span has no trace id, and ``get_trace_summary(None)`` says why, naming the switch that
may have done it: ``NON_ENABLE_TRACING=false`` or the standard ``OTEL_SDK_DISABLED=true``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
from nons import ModelConfig, ModelProvider, NoN, Node, get_observability
network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])
result = network.run_sync("hello")
print("trace id:", result.trace_id)
try:
    get_observability().get_trace_summary(result.trace_id)
except ValueError as error:
    print("refused:", error)
"""


@pytest.mark.parametrize("switch", ["OTEL_SDK_DISABLED=true", "NON_ENABLE_TRACING=false"])
def test_the_summary_of_an_untraced_pass_names_the_switch_that_may_have_turned_tracing_off(switch: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    variable, value = switch.split("=")
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, "PYTHONPATH": str(Path(__file__).parents[2]), variable: value},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    trace_line, refusal = completed.stdout.strip().splitlines()[-2:]
    assert trace_line == "trace id: None"
    assert refusal.startswith("refused: no trace id given") and switch in refusal, refusal
