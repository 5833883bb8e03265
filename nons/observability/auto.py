"""Telemetry that sets itself up at the first network pass or agent run, without blocking the event loop.

Unless ``NON_ENABLE_TRACING`` and ``NON_ENABLE_METRICS`` are both false, the first pass calls
:func:`setup_telemetry`: the OpenTelemetry SDK and the exporters the ``OTEL_*`` variables name (gRPC alone takes a
few hundred milliseconds to import) are imported on a worker thread, then
:func:`~nons.observability.setup.ensure_telemetry` installs them on the caller's thread (the main thread can
install the SIGTERM handler; a worker thread cannot). After that, and when the application called
``configure_telemetry()`` itself, or ``shutdown_telemetry()`` ran, a pass pays one global read
(:func:`telemetry_pending`).

This module imports nothing of the SDK itself, so the engine can import it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from nons.base.loading import imported, load_off_loop

if TYPE_CHECKING:  # the settings module loads pydantic-settings; callers pass their settings in
    from nons.base.settings import Settings


__all__ = ["setup_telemetry", "telemetry_pending"]

_SETUP = "nons.observability.setup"
_done = False


def telemetry_pending(settings: Settings) -> bool:
    """Whether a pass under ``settings`` should call :func:`setup_telemetry` first."""
    # Either switch is enough: NON_ENABLE_TRACING=false alone must not stop the metrics' export.
    if _done or not (settings.enable_tracing or settings.enable_metrics):
        return False
    setup = imported(_SETUP)
    if setup is None:
        return True
    # Set up already by the application, or shut down: nothing to do, and no need to ask again; unless the
    # SIGTERM handler is still to be installed by the main thread (set up from another thread).
    if setup.telemetry_was_shut_down():
        return False
    return not setup.telemetry_is_configured() or setup.sigterm_pending()


def _import_setup() -> ModuleType:
    setup = importlib.import_module(_SETUP)
    setup.preload()
    return setup


async def setup_telemetry() -> None:
    """Set telemetry up (see the module's docstring); the imports run on a worker thread."""
    global _done
    setup = imported(_SETUP)
    if setup is None or not setup.preloaded():
        # Also when another pass is importing it right now: the worker thread waits for that import to finish.
        setup = await load_off_loop(_import_setup)
    setup.ensure_telemetry()
    _done = not setup.sigterm_pending()
