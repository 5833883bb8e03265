"""OpenTelemetry for NoN.

The engine records spans and metrics through the OpenTelemetry *API* only. An application that wants them
exported calls :func:`configure_telemetry` once (the ``nons`` CLI and the demo do), or installs its own SDK
providers, which NoN never replaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TelemetryHandle", "configure_telemetry", "get_observability", "shutdown_telemetry"]

if TYPE_CHECKING:
    from nons.observability.integration import get_observability
    from nons.observability.setup import TelemetryHandle, configure_telemetry, shutdown_telemetry


def __getattr__(name: str) -> Any:
    # Lazy: importing the SDK and exporters costs ~100 ms that `import nons` should not pay.
    if name in ("configure_telemetry", "shutdown_telemetry", "TelemetryHandle"):
        from nons.observability import setup

        return getattr(setup, name)
    if name == "get_observability":
        from nons.observability.integration import get_observability

        return get_observability
    raise AttributeError(name)
