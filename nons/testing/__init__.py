"""Testing utilities: a local emulator of the Anthropic, OpenAI and Gemini HTTP APIs.

See :mod:`nons.testing.emulator`.
"""

from nons.testing.answers import EmulatedToolCall, Fault, Reply
from nons.testing.emulator import ProviderEmulator, RecordedRequest

__all__ = ["EmulatedToolCall", "Fault", "ProviderEmulator", "RecordedRequest", "Reply"]
