"""The providers under test and a request builder, shared by the provider test modules."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from nons.base.messages import LLMRequest, Message
from nons.core.types import ModelConfig, ModelProvider
from nons.providers._sdk import SDKProvider
from nons.providers.anthropic import AnthropicProvider
from nons.providers.google import GoogleProvider
from nons.providers.openai import OpenAIProvider
from nons.testing import ProviderEmulator

#: A recognisable fake key: no error message, log line or traceback may ever contain it.
SECRET = "sk-test-SECRET-123"


@dataclass(frozen=True)
class Case:
    """One provider under test: its NoN name, class, a model with a known price, and its key variable."""

    name: str
    cls: type[SDKProvider[Any]]
    model: str
    env: str

    @property
    def provider(self) -> ModelProvider:
        return ModelProvider(self.name)


# claude-sonnet-4-6 rather than 4-5: the SDK warns that 4-5 is deprecated (end of life 2026-11-30).
CASES = [
    Case("anthropic", AnthropicProvider, "claude-sonnet-4-6", "ANTHROPIC_API_KEY"),
    Case("openai", OpenAIProvider, "gpt-4o-mini", "OPENAI_API_KEY"),
    Case("google", GoogleProvider, "gemini-2.0-flash", "GOOGLE_API_KEY"),
]


def case_named(name: str) -> Case:
    """The case of provider ``name``."""
    return next(c for c in CASES if c.name == name)


def make_request(
    case: Case,
    emu: ProviderEmulator,
    messages: list[Message] | None = None,
    *,
    api_key: str | None = SECRET,
    timeout_s: float = 5.0,
    **kwargs: Any,
) -> LLMRequest:
    """A request for ``case``'s model, aimed at the emulator. ``kwargs`` go to ``ModelConfig`` when they are
    config fields and to ``LLMRequest`` otherwise."""
    config_fields = {field.name for field in dataclasses.fields(ModelConfig)}
    config = ModelConfig(
        base_url=emu.base_url_for(case.name),
        api_key=SecretStr(api_key) if api_key is not None else None,
        **{k: v for k, v in kwargs.items() if k in config_fields},
    )
    return LLMRequest(
        provider=case.provider,
        model=case.model,
        config=config,
        messages=messages or [Message("user", "What is the capital of France?")],
        timeout_s=timeout_s,
        **{k: v for k, v in kwargs.items() if k not in config_fields},
    )
