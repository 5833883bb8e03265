"""Testing utilities: a local emulator of the Anthropic, OpenAI and Gemini HTTP APIs.

See :mod:`nons.testing.emulator`.
"""

from nons.testing.emulator import EmulatedToolCall, Fault, ProviderEmulator, RecordedRequest, Reply

__all__ = ["EmulatedToolCall", "Fault", "ProviderEmulator", "RecordedRequest", "Reply"]
