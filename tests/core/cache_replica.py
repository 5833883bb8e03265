"""One replica of the cross-process single-flight test: identical concurrent calls through a cache shared in Redis.

    python cache_replica.py --url redis://127.0.0.1:P/0 --base-url http://127.0.0.1:Q/v1 --calls 33

Prints ``ready``, reads a start time from standard input, makes ``--calls`` identical calls at once to the
provider emulator (the real OpenAI SDK), and prints one JSON line: how many were answered without a provider call
(cached) and every error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from pydantic import SecretStr

from nons.base.messages import Message
from nons.base.results import LLMCallRecord
from nons.base.settings import get_settings
from nons.base.types import CacheConfig, LayerConfig
from nons.core.cache import configure_cache
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.types import ModelConfig, ModelProvider


async def run(url: str, base_url: str, calls: int) -> dict[str, object]:
    configure_cache(redis=url)
    config = ModelConfig(
        provider=ModelProvider.OPENAI, model_name="gpt-4o-mini", temperature=0, base_url=base_url,
        api_key=SecretStr("sk-test-single-flight"),
    )
    site = CallSite("node", "generate", config, (), LayerConfig(), cache=CacheConfig())
    print("ready", flush=True)
    start_at = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    ctx = PassContext.start("single-flight", "pass", get_settings())
    records: list[LLMCallRecord] = []
    messages = [Message("user", "What is the capital of France?")]
    outcomes = await asyncio.gather(
        *(call_llm(ctx, site, list(messages), records) for _ in range(calls)), return_exceptions=True
    )
    return {
        "cached": sum(r.cached for r in records),
        "answers": sorted({o.text for o in outcomes if not isinstance(o, BaseException)}),
        "errors": [repr(o) for o in outcomes if isinstance(o, BaseException)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--calls", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.base_url, args.calls))), flush=True)


if __name__ == "__main__":
    main()
