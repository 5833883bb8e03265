"""Model configs and operators that the core tests share."""

from __future__ import annotations

import asyncio
from typing import Any

from nons.core.types import ModelConfig, ModelProvider
from nons.operators.context import OperatorContext
from nons.operators.registry import operator


def sim(model: str = "gpt-4o-mini", **extra: Any) -> ModelConfig:
    """A simulated-provider config; ``extra`` become ``mock_*`` extra params (without the prefix)."""
    return ModelConfig(
        provider=ModelProvider.MOCK, model_name=model, extra_params={f"mock_{k}": v for k, v in extra.items()}
    )


def failing(kind: str = "server_error", model: str = "gpt-4o-mini", **extra: Any) -> ModelConfig:
    return sim(model, failure_rate=1.0, failure_kind=kind, **extra)


#: Names of the nodes whose ``wait_forever`` operator saw its cancellation.
cancelled: list[str] = []


@operator("echo", description="Return the input unchanged (test operator).", uses_llm=False, replace=True)
async def echo(ctx: OperatorContext, input: Any) -> Any:
    return input


@operator("wait_forever", description="Block until cancelled (test operator).", uses_llm=False, replace=True)
async def wait_forever(ctx: OperatorContext, input: Any) -> Any:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(ctx.node_id)
        raise


@operator("boom", description="Raise ValueError (test operator).", uses_llm=False, replace=True)
async def boom(ctx: OperatorContext, input: Any) -> Any:
    raise ValueError(f"boom on {input!r}")
