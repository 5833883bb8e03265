"""Testing utilities: a local emulator of the Anthropic, OpenAI and Gemini HTTP APIs, and a real local model server.

See :mod:`nons.testing.emulator` and :mod:`nons.testing.llama_server`.
"""

from nons.testing.answers import EmulatedToolCall, Fault, Reply
from nons.testing.dialects.base import OutputFormat
from nons.testing.emulator import ProviderEmulator, RecordedRequest
from nons.testing.llama_server import LlamaServer, LlamaServerBuild, LlamaServerUnavailable, locate_llama_server

__all__ = [
    "EmulatedToolCall",
    "Fault",
    "LlamaServer",
    "LlamaServerBuild",
    "LlamaServerUnavailable",
    "OutputFormat",
    "ProviderEmulator",
    "RecordedRequest",
    "Reply",
    "locate_llama_server",
]
