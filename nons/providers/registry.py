"""Which provider serves a node, and the one shared instance of each provider class."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading

from nons.base.errors import ConfigurationError
from nons.base.settings import Settings
from nons.base.types import ModelConfig, ModelProvider
from nons.providers.base import Provider

__all__ = [
    "DEFAULT_MODELS",
    "close_providers",
    "default_model",
    "get_provider",
    "load_provider",
    "loaded_provider",
    "resolve_provider",
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
_instances_lock = threading.Lock()  # providers may be loaded from worker threads (load_provider)
_announced_mock = False


def resolve_provider(config: ModelConfig, settings: Settings) -> ModelProvider:
    """The provider of ``config``: its own, else ``NON_DEFAULT_PROVIDER``, else the first with a key, else MOCK.

    A provider that is named is always used as named; only an unnamed one may become the simulated provider,
    and that is announced once in the log.
    """
    if config.provider is not None:
        return config.provider
    if settings.default_provider is not None:
        return settings.default_provider
    for provider in _KEY_ORDER:
        if settings.api_key_for(provider) is not None:
            return provider
    global _announced_mock
    if not _announced_mock:
        _announced_mock = True
        logger.warning(
            "No API key is set (ANTHROPIC_API_KEY, OPENAI_API_KEY, GOOGLE_API_KEY): nodes without a provider "
            "use the simulated provider. Its answers are simulated, and its spans say so."
        )
    return ModelProvider.MOCK


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


def loaded_provider(provider: ModelProvider) -> Provider | None:
    """The shared instance of ``provider`` if it is loaded already, else ``None`` (never imports)."""
    return _instances.get(provider)


async def load_provider(provider: ModelProvider) -> Provider:
    """:func:`get_provider` without blocking the running event loop: the first time, the provider's module and
    vendor SDK are imported on a worker thread, so the application's other coroutines keep running."""
    instance = _instances.get(provider)
    if instance is not None:
        return instance
    return await asyncio.to_thread(get_provider, provider)


async def close_providers() -> None:
    """Close every client the providers opened (call at shutdown)."""
    for instance in list(_instances.values()):
        await instance.aclose()
