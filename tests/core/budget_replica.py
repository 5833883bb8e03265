"""One replica of the cross-process budget test: 100 concurrent calls against a network budget shared in Redis.

    python budget_replica.py --url redis://127.0.0.1:P/0 --limit-usd X

Prints ``ready``, reads a start time from standard input, makes its calls at that time, and prints one JSON line:
the cost of each call that succeeded and how many were refused with BudgetExceededError.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from nons.base.errors import BudgetExceededError
from nons.base.messages import Message
from nons.base.results import LLMCallRecord
from nons.base.settings import get_settings
from nons.base.types import Budget, BudgetScope, LayerConfig
from nons.core.budgets import configure_budgets
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.types import ModelConfig, ModelProvider

MODEL = ModelConfig(
    provider=ModelProvider.MOCK, model_name="gemini-2.0-flash", max_tokens=100,
    extra_params={"mock_latency_s": 0.05},
)
MESSAGES = [Message("user", "What is the capital of France?")]


async def run(url: str, limit_usd: float) -> dict[str, object]:
    book = configure_budgets(Budget(usd=limit_usd, per=BudgetScope.NETWORK), redis=url)
    print("ready", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    ctx = PassContext.start("shared-budget", "pass", get_settings())
    site = CallSite("node", "generate", MODEL, (), LayerConfig())
    records: list[LLMCallRecord] = []
    outcomes = await asyncio.gather(
        *(call_llm(ctx, site, list(MESSAGES), records) for _ in range(100)), return_exceptions=True
    )
    await book.settled()
    refused = sum(isinstance(o, BudgetExceededError) for o in outcomes)
    others = [repr(o) for o in outcomes if isinstance(o, BaseException) and not isinstance(o, BudgetExceededError)]
    return {"costs": [r.cost_usd for r in records], "refused": refused, "errors": others}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--limit-usd", type=float, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.limit_usd))), flush=True)


if __name__ == "__main__":
    main()
