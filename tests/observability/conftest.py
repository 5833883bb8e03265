"""The observability tests' fixtures, defined in :mod:`otel_harness`."""

from otel_harness import otel, otel_logs, sdk

__all__ = ["otel", "otel_logs", "sdk"]
