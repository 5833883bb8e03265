"""The worst case of an LLM call's attempt: the most it can cost, which budgets reserve before it is sent.

The input tokens are counted as UTF-8 bytes / 3, which is above what any of the providers' tokenizers count for
prose and code, over the messages, the system prompt, the tools offered and the response schema; the output
tokens are ``max_tokens`` (:data:`UNSET_MAX_TOKENS` when the model config sets none). Both are priced at the
model's price, at the service tier and speed the request asks for.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from nons.base.messages import LLMRequest
from nons.base.results import Usage
from nons.core.pricing import price_usd
from nons.providers.base import PriceSource

__all__ = ["TOOLS_PROMPT_TOKENS", "UNSET_MAX_TOKENS", "worst_case_usd"]

#: Output tokens reserved for a call whose model config sets no ``max_tokens``.
UNSET_MAX_TOKENS = 4096


def worst_case_usd(source: PriceSource | str | None, request: LLMRequest) -> float | None:
    """The most an attempt of ``request`` can cost (see the module's doc), or ``None`` when its price is unknown.

    ``source`` is whose prices the call pays (:meth:`Provider.price_source`), the same as its recorded cost's."""
    input_tokens = math.ceil(_input_bytes(request) / 3) + 8 * (len(request.messages) + 1)
    if request.tools:
        input_tokens += TOOLS_PROMPT_TOKENS
    output_tokens = request.config.max_tokens or UNSET_MAX_TOKENS
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    contexts = _price_contexts(request.config.extra_params)
    prices = [price_usd(source, request.model, replace(usage, price_context=context)) for context in contexts]
    known = [price for price in prices if price is not None]
    return max(known) if len(known) == len(prices) else None


def _price_contexts(extra_params: Mapping[str, Any]) -> list[tuple[tuple[str, str], ...]]:
    """The price contexts an answer to a request with these ``extra_params`` may be priced at.

    An answer is priced at the tier and speed it is served at (OpenAI's priority twice the default, Anthropic's
    fast mode several times standard): the reservation is made at those asked for, and OpenAI's "auto" at the
    dearest it may give, else a call at priority spent twice what it held."""
    choices: list[list[tuple[str, str]]] = []
    tier = extra_params.get("service_tier")
    if isinstance(tier, str) and tier != "default":
        choices.append([("service_tier", t) for t in (("default", "priority") if tier == "auto" else (tier,))])
    speed = extra_params.get("speed")
    if isinstance(speed, str) and speed != "standard":
        choices.append([("speed", speed)])
    return [tuple(context) for context in itertools.product(*choices)]  # [()] when nothing is asked for


#: Input tokens a provider adds when tools are offered: Anthropic's tool-use system prompt is 346 (its largest).
TOOLS_PROMPT_TOKENS = 400


def _input_bytes(request: LLMRequest) -> int:
    """What the request sends as input, in bytes: the messages and system prompt, and also the tools' definitions,
    the tool calls in the conversation and the response schema, all of which providers count as input tokens
    (the prompt form puts the schema in the system text). JSON written ASCII-only: a character beyond ASCII
    counts 6 bytes, more than its UTF-8, so the worst case stays above."""
    size = sum(len(m.content.encode()) for m in request.messages) + len((request.system or "").encode())
    for message in request.messages:
        for call in message.tool_calls or ():
            size += len(call.name) + len(json.dumps(call.arguments, default=str))
    for tool in request.tools:
        size += len(tool.name) + len(tool.description.encode()) + len(json.dumps(tool.parameters, default=str))
    if request.response_schema is not None:
        size += len(json.dumps(request.response_schema, default=str))
    return size
