"""Call prices from the maintained ``genai-prices`` package.

A model the package does not know has an unknown price: :func:`price_usd` returns ``None``, never ``0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading

from nons.base.results import Usage

__all__ = ["load_prices", "price_usd", "prices_loaded"]

logger = logging.getLogger(__name__)


_loaded = threading.Event()


def _load() -> None:
    # Importing genai-prices and its first lookup read its price table: about 0.4 s.
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    with contextlib.suppress(LookupError, ValueError):  # a table without that model is still loaded
        calc_price(PriceUsage(input_tokens=1, output_tokens=1), model_ref="gpt-4o-mini", provider_id="openai")
    _loaded.set()


def prices_loaded() -> bool:
    """Whether the price table is loaded (pricing a call then costs microseconds)."""
    return _loaded.is_set()


async def load_prices() -> None:
    """Load the price table on a worker thread, so the first priced call never blocks the event loop."""
    if not _loaded.is_set():
        await asyncio.to_thread(_load)


@functools.lru_cache(maxsize=8192)
def _price(provider_id: str | None, model: str, inp: int, out: int, cache_read: int, cache_write: int) -> float | None:
    # genai-prices takes ~100 µs a call; the same (model, usage) recurs constantly in ensembles, so cache it.
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    usage = PriceUsage(
        input_tokens=inp, output_tokens=out, cache_read_tokens=cache_read, cache_write_tokens=cache_write
    )
    try:
        return float(calc_price(usage, model_ref=model, provider_id=provider_id).total_price)
    except LookupError:
        logger.debug("no known price for model %r (provider %r)", model, provider_id)
        return None
    except ValueError as error:
        # Usage the price table cannot take (say, more cache reads than input tokens, which a server that
        # reports no prompt tokens produces): the call succeeded and was paid for, so its cost is unknown,
        # never a failure of the call.
        logger.warning("cannot price %r usage for model %r: %s", provider_id or "", model, error)
        return None


def price_usd(provider_id: str | None, model: str, usage: Usage) -> float | None:
    """The USD price of ``usage`` on ``model``, or ``None`` when the price is unknown.

    ``provider_id`` is genai-prices' provider id (``anthropic``, ``openai``, ``google``); ``None`` matches the
    model name across providers, which is how the simulated provider charges real models' prices.
    ``usage.input_tokens`` must include the cached tokens.
    """
    return _price(
        provider_id,
        model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    )
