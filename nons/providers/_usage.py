"""A response's token usage, read by genai-prices' usage extractors rather than by hand.

genai-prices keeps, per vendor and API flavor, the paths of every usage field and how the vendor counts them:
Anthropic's ``input_tokens`` excludes cache reads and writes (they are added back), Gemini reports thinking
(``thoughtsTokenCount``) and tool-use prompt tokens apart (they are added to output and input), OpenAI's
``completion_tokens`` already includes ``reasoning_tokens``. Reading usage through the same extractor that
prices it keeps the counts and the bill consistent, and a vendor's new field reaches NoN with a genai-prices
update instead of a code change.

The extractors read the JSON wire format, so each vendor module passes the usage object as a dict in its wire
spelling (Gemini's camelCase aliases included).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from genai_prices import extract_usage

from nons.base.results import Usage
from nons.providers.base import PriceSource

__all__ = ["OPENAI_READER", "fuller", "not_reported", "served_at", "usage_from_wire", "usage_reader"]

logger = logging.getLogger(__name__)


def not_reported() -> Usage:
    """The usage of an answer that reported none: its tokens and cost are unknown (never counted as zero). A new
    object each time: a record's usage is its own."""
    return Usage(reported=False)


def served_at(usage: Usage, key: str, value: Any) -> Usage:
    """``usage`` priced at what the answer says it was served at (genai-prices' price context ``key``: OpenAI's
    ``service_tier``, Anthropic's ``speed``), when it says it and the usage is known."""
    if isinstance(value, str) and value and usage.reported:
        return dataclasses.replace(usage, price_context=((key, value),))
    return usage


def usage_from_wire(response: Mapping[str, Any], *, provider_id: str, api_flavor: str = "default") -> Usage:
    """NoN's :class:`~nons.base.results.Usage` of a response in ``provider_id``'s wire format.

    ``response`` holds at least the usage object under the key the vendor's API uses (``usage``,
    ``usageMetadata``). Usage that lacks a field the extractor requires (a compatible server's partial usage) is
    :func:`not_reported`: unknown, not zero.
    """
    try:
        extracted = extract_usage(dict(response), provider_id=provider_id, api_flavor=api_flavor).usage
    except (ValueError, LookupError) as error:  # LookupError: a provider the price data no longer knows
        # The call still succeeded; what it used, and so what it cost, is unknown.
        logger.debug("no usable usage in the %s response: %s", provider_id, error)
        return not_reported()
    return Usage(
        input_tokens=_count(extracted.input_tokens),
        output_tokens=_count(extracted.output_tokens),
        cache_read_tokens=_count(extracted.cache_read_tokens),
        cache_write_tokens=_count(extracted.cache_write_tokens),
        reasoning_tokens=_count(extracted.output_reasoning_tokens),
        billed_extra=_billed_extra(extracted),
    )


#: The keys of genai-prices' usage that :class:`~nons.base.results.Usage` has fields for.
_COUNTED = frozenset(
    {"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "output_reasoning_tokens"}
)


def _billed_extra(extracted: Any) -> tuple[tuple[str, int], ...]:
    """The rest of what the extractor read (a 1-hour cache write, web searches, audio tokens): the price depends on
    it, so the call is priced with it (an Anthropic 1-hour cache write was priced at the 5-minute rate, web
    searches not at all). Only the keys genai-prices reported: its stored values (``vars``), never inferred ones."""
    return tuple(
        sorted((key, _count(value)) for key, value in vars(extracted).items() if key not in _COUNTED and value)
    )


#: OpenAI's Chat Completions usage extractor: (genai-prices provider id, API flavor).
OPENAI_READER = ("openai", "chat")


def usage_reader(source: PriceSource) -> tuple[str, str]:
    """The usage extractor of an OpenAI-compatible answer billed at ``source``'s prices: the matched provider's
    Chat Completions one (``chat``), else its ``default``, else OpenAI's. A known service may count differently
    from OpenAI (xAI leaves reasoning out of ``completion_tokens``; Perplexity bills citation tokens and
    searches): read as OpenAI counts, its calls were under-billed and their output tokens short. Looked up in
    the price data in use (an update may add or drop a service)."""
    from genai_prices import data_snapshot

    global _readers
    snapshot = data_snapshot.get_snapshot()
    known_in, readers = _readers
    if known_in is not snapshot:  # other price data: other services
        readers = {}
        _readers = (snapshot, readers)
    reader = readers.get(source)
    if reader is None:
        reader = readers[source] = _reader(source, snapshot)
    return reader


#: The readers found so far, and the price data they were found in.
_readers: tuple[Any, dict[PriceSource, tuple[str, str]]] = (None, {})


def _reader(source: PriceSource, snapshot: Any) -> tuple[str, str]:
    try:
        provider = snapshot.find_provider(None, source.provider_id, source.api_url)
    except LookupError:  # a server genai-prices does not know: its calls are unpriced; OpenAI's counts stand
        return OPENAI_READER
    flavors = {extractor.api_flavor for extractor in provider.extractors or ()}
    for flavor in ("chat", "default"):
        if flavor in flavors:
            return provider.id, flavor
    return OPENAI_READER


def fuller(first: Usage, second: Usage) -> Usage:
    """The fuller reading of one usage read two ways (OpenAI's extractor and a service's own): each count the
    larger of the two. A service's reader counts what OpenAI's leaves out (xAI's reasoning, Perplexity's
    citations); OpenAI's reads what a vendor's reader looks for elsewhere (a gateway billed at Anthropic's
    prices sends Anthropic's cache reads where OpenAI puts cached tokens). ``reported`` when either is."""
    if not first.reported:
        return second
    if not second.reported:
        return first
    extra = dict(first.billed_extra)
    for key, count in second.billed_extra:
        extra[key] = max(extra.get(key, 0), count)
    return Usage(
        max(first.input_tokens, second.input_tokens), max(first.output_tokens, second.output_tokens),
        max(first.cache_read_tokens, second.cache_read_tokens),
        max(first.cache_write_tokens, second.cache_write_tokens),
        max(first.reasoning_tokens, second.reasoning_tokens), True, tuple(sorted(extra.items())),
    )  # fmt: skip


def _count(value: Any) -> int:
    # genai-prices reports an absent field as 0 (or None in older releases); usage values may be Decimal.
    return int(value or 0)
