"""``get_observability()``: the deployment guide's entry point to recent telemetry.

The buffer it returns, and what it holds, is :mod:`nons.observability.buffer`; setting telemetry up is
:mod:`nons.observability.setup`. This module only joins the two, so neither imports the other's caller.
"""

from __future__ import annotations

from nons.observability.buffer import Observability, observability_buffer
from nons.observability.setup import ensure_telemetry

__all__ = ["get_observability"]


def get_observability() -> Observability:
    """The process's observability buffer. Sets up telemetry (``configure_telemetry``) if nothing has yet and
    it was not shut down (after ``shutdown_telemetry()`` the buffer is returned as it is)."""
    ensure_telemetry()
    return observability_buffer()
