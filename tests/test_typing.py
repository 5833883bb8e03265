"""A user's program that builds NoN's configuration as the README does type-checks under ``mypy --strict`` with no
plugin, as pyright and an editor see it (NoN ships ``py.typed``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_PROGRAM = """\
from nons import (
    Budget, BudgetScope, CacheConfig, CircuitBreakerConfig, ErrorPolicy, LayerConfig, ModelConfig, ModelProvider,
    NetworkConfig, NetworkResult, Node, NoN, StructuredOutput, configure_budgets,
)
from nons.core.scheduler import RateLimitConfig

# The README's lines, as written there.
fast = ModelConfig(provider=ModelProvider.GOOGLE, model_name="gemini-2.0-flash", temperature=0.7)
layer = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=3)
cached = NetworkConfig(name="faq", cache=CacheConfig(ttl_s=3600))
ModelConfig(provider=ModelProvider.OPENAI, model_name="smollm2", base_url="http://127.0.0.1:8080/v1",
            structured_output=StructuredOutput.JSON_OBJECT, output_repairs=2)
support = NetworkConfig(name="support", budgets=(
    Budget(usd=0.50, per=BudgetScope.PASS), Budget(usd=200, per=BudgetScope.NETWORK, window_s=86_400)))
configure_budgets(Budget(usd=5, per=BudgetScope.CALLER, window_s=86_400), Budget(usd=1_000, per=BudgetScope.PROCESS))

limits = RateLimitConfig(max_concurrent=2)
breaker = CircuitBreakerConfig()
network = NoN.from_operators([Node("generate", fast) * 3, "synthesize"], layer_config=layer)


async def answer(question: str) -> str:
    result: NetworkResult = await network.run(question)
    return str(result.output)
"""


def test_the_documented_configuration_type_checks_without_the_pydantic_plugin(tmp_path: Path) -> None:
    # Fields whose default was given positionally (``Field(None, gt=0)``) are required to a type checker, which
    # reads only ``default=``: every ModelConfig, LayerConfig, NetworkConfig and Budget a user wrote was an error
    # ("Missing named argument "max_tokens" for "ModelConfig"") in mypy without pydantic's plugin and in pyright.
    pytest.importorskip("mypy", reason="mypy is a development tool: ./scripts/bootstrap dev")
    (tmp_path / "program.py").write_text(USER_PROGRAM)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # not the project's configuration, which loads the plugin
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini", "--no-incremental",
         "--follow-imports=silent", "program.py"],
        cwd=tmp_path, env={"MYPYPATH": str(ROOT), "PATH": ""}, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
