"""The observability tests' fixtures, defined in :mod:`otel_harness` and :mod:`genai_harness`."""

from genai_harness import events, started
from otel_harness import otel, otel_logs, sdk

__all__ = ["events", "otel", "otel_logs", "sdk", "started"]
