"""A service assembled from a spec file and settings: networks, callers, limits, telemetry and the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nons.serve.app import ServiceState, create_app
from nons.serve.auth import TokenTable
from nons.serve.limits import CallerLimits
from nons.serve.settings import KUBERNETES_GRACE_S, ServeSettings
from nons.spec import load_spec

__all__ = ["Service", "build_service"]

logger = logging.getLogger("nons.serve")

#: Probes are not traced: a span every few seconds per replica would say nothing.
_UNTRACED_URLS = "healthz,readyz"


@dataclass
class Service:
    """Everything ``nons serve`` runs. ``tokens`` is ``None`` when serving without authentication."""

    app: Any
    settings: ServeSettings
    tokens: TokenTable | None
    state: ServiceState = field(default_factory=ServiceState)

    def run(self) -> None:
        """Serve until SIGTERM or Ctrl+C, drain, then flush telemetry (see :mod:`nons.serve.server`)."""
        from nons.observability import shutdown_telemetry
        from nons.serve.server import run_server

        settings = self.settings
        try:
            run_server(
                self.app, self.state, host=settings.host, port=settings.port,
                grace_period_s=settings.grace_period_s, drain_delay_s=settings.drain_delay_s,
                access_log=settings.access_log, loop=settings.loop,
            )
        finally:
            shutdown_telemetry(timeout_millis=int(settings.telemetry_flush_s * 1000))
            logger.info("stopped")


def build_service(spec_path: str | Path, settings: ServeSettings) -> Service:
    """Load the spec, the tokens and the limits, set up telemetry, and build the instrumented app.

    Raises ``SpecError`` for a bad spec and ``ConfigurationError`` for bad settings, or when there is no
    token and ``insecure_dev`` is not set.
    """
    from nons.base.settings import get_settings
    from nons.core.types import ConfigurationError

    spec = load_spec(spec_path)
    _check_redis_url()
    secret = settings.tokens.get_secret_value() if settings.tokens is not None else None
    tokens: TokenTable | None = TokenTable.load(secret, settings.tokens_file)
    if not tokens:
        if not settings.insecure_dev:
            raise ConfigurationError(
                "refusing to start without bearer tokens: set NON_SERVE_TOKENS ('caller:token', comma-separated) "
                "or NON_SERVE_TOKENS_FILE / --tokens-file, or pass --insecure-dev for local development"
            )
        tokens = None
    if settings.shutdown_budget_s > KUBERNETES_GRACE_S:
        logger.warning(
            "drain delay + grace period + the settling of cut runs and the scheduler's stop + telemetry flush = "
            "%.1f s, over Kubernetes' default grace period of "
            "%.0f s: raise terminationGracePeriodSeconds or the process may be killed mid-drain",
            settings.shutdown_budget_s, KUBERNETES_GRACE_S,
        )
    # An admission takes up to three round trips to the storage (the window, its stats, the spend), each
    # bounded as every Redis operation of NoN is (NON_REDIS_TIMEOUT).
    limits = CallerLimits(
        settings.rate_limit, settings.spend_limit_usd_per_day, settings.limits_storage,
        timeout_s=3 * get_settings().redis_timeout,
    )  # fmt: skip
    state = ServiceState()
    app = create_app(
        spec.networks,
        tokens=tokens,
        limits=limits,
        max_input_chars=get_settings().max_input_chars,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        descriptions={name: net.description for name, net in spec.file.networks.items()},
        state=state,
    )
    _instrument(app)
    return Service(app=app, settings=settings, tokens=tokens, state=state)


def _check_redis_url() -> None:
    """Refuse a bad ``NON_REDIS_URL`` now, as a bad option is, rather than when the scheduler starts in the app's
    lifespan (a traceback from the server, and a failed start)."""
    from nons.base.errors import ConfigurationError
    from nons.base.redis_client import link_from_settings

    try:
        link_from_settings()
    except ConfigurationError as error:
        raise ConfigurationError(f"NON_REDIS_URL: {error}") from None


def _instrument(app: Any) -> None:
    """Telemetry from settings (``OTEL_*``), and server spans from the maintained FastAPI instrumentation: a
    caller's ``traceparent`` makes its trace the parent of the request's, and so of the network's."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from nons.observability import configure_telemetry

    configure_telemetry()
    FastAPIInstrumentor.instrument_app(app, excluded_urls=_UNTRACED_URLS, exclude_spans=["receive", "send"])
