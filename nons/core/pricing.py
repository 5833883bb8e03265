"""Call prices from the maintained ``genai-prices`` package.

Whose prices a call pays is a :class:`~nons.providers.base.PriceSource`: a genai-prices provider id, or the URL
of the API the call went to, which genai-prices matches against the providers it knows (so an
OpenAI-compatible service it knows is charged its own prices, and a server it does not know is unpriced, never
charged OpenAI's). Reasoning tokens are passed on as genai-prices' ``output_reasoning_tokens``, so a model whose
vendor bills thinking differently from its answer is priced as billed.

A model or server the package does not know has an unknown price: :func:`price_usd` returns ``None``, never
``0``. Prices are the package's bundled snapshot unless ``NON_PRICES_AUTO_UPDATE`` turns on its refresh (see
:func:`start_price_updates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from nons.base.errors import ConfigurationError
from nons.base.loading import load_off_loop
from nons.base.redaction import displayable_url
from nons.base.results import Usage
from nons.providers.base import PriceSource

__all__ = [
    "check_price_provider",
    "load_prices",
    "price_usd",
    "prices_loaded",
    "start_price_updates",
    "stop_price_updates",
]

logger = logging.getLogger(__name__)


#: Whether the price table is loaded: set once, by the loader thread (a bool, not a threading.Event: every call
#: reads it, and nothing waits on it).
_loaded = False


def _load() -> None:
    # Importing genai-prices and its first lookup read its price table: about 0.4 s.
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    usage = PriceUsage(input_tokens=1, output_tokens=1)
    # One lookup of each kind a call makes: by provider id; by API URL, which matches the URL against every
    # provider's pattern (compiled at first use: a few milliseconds, kept off the loop too); by model name alone.
    lookups: list[Callable[[], object]] = [
        lambda: calc_price(usage, model_ref="gpt-4o-mini", provider_id="openai"),
        lambda: calc_price(usage, model_ref="gpt-4o-mini", provider_api_url="http://127.0.0.1/"),
        lambda: calc_price(usage, model_ref="gpt-4o-mini"),
    ]
    for lookup in lookups:
        with contextlib.suppress(LookupError, ValueError):  # a table without that model is still loaded
            lookup()
    global _loaded
    _loaded = True


def prices_loaded() -> bool:
    """Whether the price table is loaded (pricing a call then costs microseconds)."""
    return _loaded


_load_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def load_prices() -> None:
    """Load the price table on a worker thread, so the first priced call never blocks the event loop.

    One load per loop at a time: the calls of a wide layer that all arrive before the table is loaded wait for
    the same load and resume in the order they came (one thread each would resume them in whatever order their
    threads finished, and a seeded simulated network would no longer give the same answers twice).
    """
    if _loaded:
        return
    lock = _load_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        if not _loaded:
            await load_off_loop(_load)


@functools.lru_cache(maxsize=8192)
def _price(
    provider_id: str | None,
    api_url: str | None,
    model: str,
    inp: int,
    out: int,
    cache_read: int,
    cache_write: int,
    reasoning: int,
    extra: tuple[tuple[str, int], ...] = (),
    context: tuple[tuple[str, str], ...] = (),
) -> tuple[float | None, bool]:
    """The price of the usage now, and whether it may be another at another time (the model's prices change with
    the time of day, or on a date to come): such a price is worked out again for every call, not taken from this
    cache (an off-peak call was charged the peak price it had first been priced at)."""
    # genai-prices takes ~100 µs a call; the same (model, usage) recurs constantly in ensembles, so cache it.
    calculation = _calculate(provider_id, api_url, model, inp, out, cache_read, cache_write, reasoning, extra, context)
    return _total(calculation), calculation is not None and _varies_in_time(calculation.model)


def _total(calculation: Any) -> float | None:
    """The price of a genai-prices calculation (USD), or ``None`` for none (the price or the usage is unknown)."""
    return None if calculation is None else float(calculation.total_price)


def _varies_in_time(model: Any) -> bool:
    """Whether genai-prices' prices of ``model`` are conditional on the time: of day, or a start date to come (one
    that has passed stays passed), in its prices or in its variants (a service tier's)."""
    from genai_prices.types import ModelPrice, StartDateConstraint

    conditions = [] if isinstance(model.prices, ModelPrice) else [price.constraint for price in model.prices]
    conditions += [variant.constraint for variant in model.price_variants or ()]
    now = datetime.datetime.now(datetime.timezone.utc)
    return any(
        condition is not None and not (isinstance(condition, StartDateConstraint) and condition.active(now))
        for condition in conditions
    )


def _calculate(
    provider_id: str | None, api_url: str | None, model: str, inp: int, out: int, cache_read: int,
    cache_write: int, reasoning: int, extra: tuple[tuple[str, int], ...], context: tuple[tuple[str, str], ...],
) -> Any:
    """genai-prices' calculation for the usage now, or ``None`` when the price or the usage is unknown."""
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    usage = PriceUsage(
        input_tokens=inp, output_tokens=out, cache_read_tokens=cache_read, cache_write_tokens=cache_write,
        **dict(extra),
    )  # fmt: skip
    if reasoning:
        usage.output_reasoning_tokens = reasoning
    try:
        price_context = dict(context) or None
        if api_url is not None:
            return calc_price(usage, model_ref=model, provider_api_url=api_url, price_context=price_context)
        return calc_price(usage, model_ref=model, provider_id=provider_id, price_context=price_context)
    except LookupError:
        shown = displayable_url(api_url) if api_url is not None else None
        logger.debug("no known price for model %r (provider %r, API %r)", model, provider_id, shown)
        return None
    except ValueError as error:
        # Usage the price table cannot take (say, more cache reads than input tokens, which a server that
        # reports no prompt tokens produces): the call succeeded and was paid for, so its cost is unknown,
        # never a failure of the call.
        source = provider_id or (displayable_url(api_url) if api_url is not None else "")
        logger.warning("cannot price %r usage for model %r: %s", source, model, error)
        return None


@functools.lru_cache(maxsize=64)
def check_price_provider(provider_id: str) -> None:
    """Refuse a ``ModelConfig.price_provider`` genai-prices does not know (a typo would leave every call of the
    model unpriced without a word): raise ConfigurationError naming it and the known ids."""
    from genai_prices import data_snapshot

    providers = data_snapshot.get_snapshot().providers
    if data_snapshot.find_provider_by_id(providers, provider_id) is None:
        known = ", ".join(sorted(p.id for p in providers))
        raise ConfigurationError(
            f"ModelConfig.price_provider {provider_id!r} is not a provider genai-prices knows; known: {known}"
        )


def price_usd(source: PriceSource | str | None, model: str, usage: Usage) -> float | None:
    """The USD price of ``usage`` on ``model``, or ``None`` when the price, or the usage, is unknown.

    ``source`` says whose prices: a :class:`PriceSource`, or a genai-prices provider id (``anthropic``,
    ``openai``, ``google``); ``None`` matches the model name across providers, which is how the simulated
    provider charges real models' prices. ``usage.input_tokens`` includes the cached tokens and
    ``usage.output_tokens`` the reasoning tokens.
    """
    if not usage.reported:  # the server said nothing of what the call used: its price is unknown, not zero
        return None
    if not isinstance(source, PriceSource):
        source = PriceSource(provider_id=source)
    if _updater is not None:
        _current_prices()
    key = (
        source.provider_id,
        source.api_url,
        model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
        usage.billed_extra,
        usage.price_context,
    )
    price, varies = _price(*key)
    return _total(_calculate(*key)) if varies else price


# -- the opt-in price refresh ----------------------------------------------------------------------------------

_updater: Any = None
_updater_lock = threading.Lock()
_snapshot: Any = None


def start_price_updates(url: str | None = None) -> bool:
    """Start genai-prices' background refresh of its price data (``NON_PRICES_AUTO_UPDATE=true``), from
    ``url`` (``NON_PRICES_UPDATE_URL``; default: genai-prices' own, on GitHub).

    Off by default: it fetches the prices over the network once an hour, which an offline or locked-down
    deployment must not do unasked. A failed fetch keeps the prices in use. Returns whether it started one
    (a second call does nothing).
    """
    global _updater
    if _updater is not None:
        return False
    with _updater_lock:
        if _updater is not None:
            return False
        from genai_prices import UpdatePrices

        updater = UpdatePrices(url=url) if url else UpdatePrices()
        updater.start()
        _updater = updater
    logger.info("genai-prices price refresh started (%s)", url or "genai-prices' default source")
    return True


def _current_prices() -> None:
    """Forget the cached prices when genai-prices has swapped in newer data since they were computed."""
    global _snapshot
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    if snapshot is not _snapshot:
        _price.cache_clear()
        _snapshot = snapshot


def stop_price_updates() -> None:
    """Stop the refresh :func:`start_price_updates` started (prices fall back to the bundled snapshot)."""
    global _updater
    with _updater_lock:
        updater, _updater = _updater, None
    if updater is not None:
        updater.stop()
        # genai-prices keeps the fetched prices in use after its updater stops: back to the bundled ones, as said.
        from genai_prices import data_snapshot

        data_snapshot.set_custom_snapshot(None)
        _price.cache_clear()
