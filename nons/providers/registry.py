"""Which provider serves a node, and the one shared instance of each provider class."""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from nons.base.errors import ConfigurationError
from nons.base.loading import load_off_loop
from nons.base.types import ModelConfig, ModelProvider
from nons.providers.base import Provider

if TYPE_CHECKING:  # the settings module loads pydantic-settings: imported by the caller that has settings
    from nons.base.settings import Settings

__all__ = [
    "DEFAULT_MODELS",
    "close_providers",
    "default_model",
    "get_provider",
    "is_simulated_model",
    "load_provider",
    "loaded_provider",
    "resolve_provider",
    "sends_sampling",
    "vendor_of",
]

logger = logging.getLogger(__name__)

#: The model a node calls when its config names a provider but no model.
DEFAULT_MODELS: dict[ModelProvider, str] = {
    ModelProvider.ANTHROPIC: "claude-sonnet-4-6",
    ModelProvider.OPENAI: "gpt-4o-mini",
    ModelProvider.GOOGLE: "gemini-2.0-flash",
    ModelProvider.MOCK: "simulated",
}

# Modules are imported on first use so that `import nons` never loads a vendor SDK.
_MODULES: dict[ModelProvider, tuple[str, str]] = {
    ModelProvider.ANTHROPIC: ("nons.providers.anthropic", "AnthropicProvider"),
    ModelProvider.OPENAI: ("nons.providers.openai", "OpenAIProvider"),
    ModelProvider.GOOGLE: ("nons.providers.google", "GoogleProvider"),
    ModelProvider.MOCK: ("nons.providers.mock", "MockProvider"),
}

_KEY_ORDER = (ModelProvider.ANTHROPIC, ModelProvider.OPENAI, ModelProvider.GOOGLE)
_instances: dict[ModelProvider, Provider] = {}
_load_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_instances_lock = threading.Lock()  # providers may be loaded from worker threads (load_provider)

#: ``loaded_provider(provider)``: the shared instance of ``provider`` if it is loaded already, else ``None``
#: (never imports). The dict's own ``get``, not a function around it: every call asks, and a Python call costs
#: more than the lookup.
loaded_provider: Callable[[ModelProvider], Provider | None] = _instances.get
_announced_mock = False


def resolve_provider(config: ModelConfig, settings: Settings) -> ModelProvider:
    """The provider of ``config``, the first of:

    1. its own ``provider``, or ``NON_DEFAULT_PROVIDER``: a provider that is named is used as named;
    2. the simulated provider for one of its own model names (``simulated``, ``simulated-*``);
    3. the vendor whose model ``model_name`` is (``gpt-*``, ``o3-*``: OpenAI; ``claude-*``: Anthropic;
       ``gemini-*``: Google, as genai-prices recognises them), whether or not its key is set: a vendor's model
       never gets a simulated answer, and a missing key fails the call with a ConfigurationError naming it;
    4. the first provider with a key set;
    5. with no key at all, the simulated provider, but only for a config that names no model (announced once).
       A model no vendor is known for, with no key, is a ConfigurationError.
    """
    if config.provider is not None:
        return config.provider
    if settings.default_provider is not None:
        return settings.default_provider
    model = config.model_name
    if model is not None:
        if is_simulated_model(model):
            return ModelProvider.MOCK
        vendor = vendor_of(model)
        if vendor is not None:
            return vendor
    for provider in _KEY_ORDER:
        if settings.api_key_for(provider) is not None:
            return provider
    if model is not None:
        raise ConfigurationError(
            f"no provider for model {model!r}: it is no known vendor's model and no API key is set "
            "(ANTHROPIC_API_KEY, OPENAI_API_KEY, GOOGLE_API_KEY). Name its provider (ModelConfig.provider or "
            "NON_DEFAULT_PROVIDER), or ModelProvider.MOCK to simulate it"
        )
    global _announced_mock
    if not _announced_mock:
        _announced_mock = True
        logger.warning(
            "No API key is set (ANTHROPIC_API_KEY, OPENAI_API_KEY, GOOGLE_API_KEY): nodes that name neither a "
            "provider nor a model use the simulated provider. Its answers are simulated, and its spans say so."
        )
    return ModelProvider.MOCK


#: The model names of the simulated provider: ``simulated`` and ``simulated-`` followed by anything.
SIMULATED_MODEL = "simulated"


def is_simulated_model(model: str) -> bool:
    """Whether ``model`` is one of the simulated provider's own model names."""
    return model == SIMULATED_MODEL or model.startswith(SIMULATED_MODEL + "-")


# The genai-prices provider of each vendor: its ``model_match`` says which model names are the vendor's.
_VENDOR_PRICE_IDS = {
    "anthropic": ModelProvider.ANTHROPIC,
    "openai": ModelProvider.OPENAI,
    "google": ModelProvider.GOOGLE,
}


@functools.lru_cache(maxsize=1024)
def vendor_of(model: str) -> ModelProvider | None:
    """The vendor whose model ``model`` is, as genai-prices' provider data recognises it (``None``: no vendor's)."""
    from genai_prices import data_snapshot

    for provider in data_snapshot.get_snapshot().providers:
        vendor = _VENDOR_PRICE_IDS.get(provider.id)
        if vendor is not None and provider.model_match is not None and provider.model_match.is_match(model):
            return vendor
    return None


#: The providers whose API is never sent ``temperature`` or ``top_p`` (see ``nons.providers.anthropic``): a
#: config's values reach neither the request nor its span, and temperature 0 does not make its calls repeatable.
_SAMPLING_NOT_SENT = frozenset({ModelProvider.ANTHROPIC})


def sends_sampling(provider: ModelProvider) -> bool:
    """Whether ``provider``'s requests carry a config's ``temperature`` and ``top_p``."""
    return provider not in _SAMPLING_NOT_SENT


def default_model(provider: ModelProvider) -> str:
    """The model used when a config names none."""
    return DEFAULT_MODELS[provider]


def get_provider(provider: ModelProvider) -> Provider:
    """The shared instance that serves ``provider``, imported and made on first use (its vendor SDK takes 0.5 to
    2 s to import: inside an event loop, use :func:`load_provider`)."""
    instance = _instances.get(provider)
    if instance is None:
        try:
            module_name, class_name = _MODULES[provider]
        except KeyError:
            raise ConfigurationError(f"unknown provider {provider!r}") from None
        module = importlib.import_module(module_name)
        with _instances_lock:
            instance = _instances.get(provider)
            if instance is None:
                instance = _instances[provider] = getattr(module, class_name)()
    return instance


async def load_provider(provider: ModelProvider) -> Provider:
    """:func:`get_provider` without blocking the running event loop: the first time, the provider's module and
    vendor SDK are imported on a worker thread, so the application's other coroutines keep running."""
    instance = _instances.get(provider)
    if instance is not None:
        return instance
    # One import at a time per loop: concurrent first calls wait for the same one and resume in the order they
    # came, so a seeded simulated network answers the same way every time (see nons.core.pricing.load_prices).
    lock = _load_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        loaded = _instances.get(provider)
        return loaded if loaded is not None else await load_off_loop(get_provider, provider)


async def close_providers() -> None:
    """Close every client the providers opened (call at shutdown)."""
    for instance in list(_instances.values()):
        await instance.aclose()
