"""The vendor wire formats the provider emulator speaks, one class each behind :class:`Dialect`.

To emulate another vendor, subclass :class:`Dialect` in a module of its own and add an instance to
:data:`DIALECTS`.
"""

from __future__ import annotations

from collections.abc import Mapping

from nons.testing.dialects.anthropic import AnthropicDialect
from nons.testing.dialects.base import Dialect, ProviderName
from nons.testing.dialects.gemini import GeminiDialect
from nons.testing.dialects.openai import OpenAIDialect

__all__ = ["DIALECTS", "AnthropicDialect", "Dialect", "GeminiDialect", "OpenAIDialect", "ProviderName"]

#: Every dialect the emulator speaks, by provider name.
DIALECTS: Mapping[ProviderName, Dialect] = {
    d.name: d for d in (OpenAIDialect(), AnthropicDialect(), GeminiDialect())
}
