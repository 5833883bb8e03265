"""OpenTelemetry for NoN.

The engine records spans and metrics through the OpenTelemetry *API* only. Telemetry sets itself up at the
first network pass or agent run (unless both ``NON_ENABLE_TRACING`` and ``NON_ENABLE_METRICS`` are ``false``):
SDK providers and exporters from the standard ``OTEL_*`` variables, or the application's own SDK providers, which
NoN never replaces and adds nothing to but a span processor that keeps NoN's own spans for
:func:`get_observability`. An application may call
:func:`configure_telemetry` earlier to choose the moment, and :func:`shutdown_telemetry` to flush and stop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TelemetryHandle", "configure_telemetry", "ensure_telemetry", "get_observability", "shutdown_telemetry"]

if TYPE_CHECKING:
    from nons.observability.integration import get_observability
    from nons.observability.setup import TelemetryHandle, configure_telemetry, ensure_telemetry, shutdown_telemetry


def __getattr__(name: str) -> Any:
    # Lazy: importing the SDK and exporters costs ~100 ms that `import nons` should not pay.
    if name in ("configure_telemetry", "ensure_telemetry", "shutdown_telemetry", "TelemetryHandle"):
        from nons.observability import setup

        return getattr(setup, name)
    if name == "get_observability":
        from nons.observability.integration import get_observability

        return get_observability
    raise AttributeError(name)
