"""Set up the OpenTelemetry SDK for an application: one call, from settings and the standard ``OTEL_*``
variables, made by NoN itself at the first network pass or agent run unless both ``NON_ENABLE_TRACING``
and ``NON_ENABLE_METRICS`` are ``false``.

NoN behaves as a guest in an application that has its own OpenTelemetry setup: which providers it installs or
uses as they are, and which loggers it bridges to OTel logs, is :mod:`nons.observability.otel_providers`, with
the :class:`~nons.observability.otel_providers.TelemetryHandle` that records them. This module decides when
telemetry is set up (once per process, all or nothing), builds the resource, and shuts it down.

Which exporters (the standard ``OTEL_*_EXPORTER`` variables) and how what they lose is counted is
:mod:`nons.observability.exporters`; the in-process buffer is :mod:`nons.observability.buffer`; leaving on time
(exit, SIGTERM) is :mod:`nons.observability.shutdown`.

Export never gets in the way of the application: spans and logs go through the SDK's batch processors (bounded
queues, a background thread; or spans through fastotel's native one, :mod:`nons.observability.fast_export`),
metrics through a periodic reader, and every exporter is wrapped so that what is lost (a full queue, a collector
that is down) is counted in ``get_observability().get_stats()["export"]`` and reported once in a warning, never
raised.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from nons.base.settings import Settings, apply_log_level, get_settings
from nons.base.version import __version__
from nons.observability.buffer import observability_buffer
from nons.observability.exporters import check_exporter_names, exporter_names, import_exporters
from nons.observability.otel_env import check_otel_environment
from nons.observability.otel_providers import (
    ENV_ROOT_LOG_BRIDGE as ENV_ROOT_LOG_BRIDGE,  # importable from here still, where it was defined first
)
from nons.observability.otel_providers import (
    TelemetryHandle,
    discard,
    flush_at_exit,
    install_logs,
    install_metrics,
    install_tracing,
    variables_nons_exports_by,
)
from nons.observability.shutdown import uninstall_sigterm_flush

__all__ = [
    "TelemetryHandle",
    "build_resource",
    "configure_telemetry",
    "ensure_telemetry",
    "preload",
    "preloaded",
    "shutdown_telemetry",
    "sigterm_pending",
    "telemetry_is_configured",
    "telemetry_was_shut_down",
]

_lock = threading.Lock()
_handle: TelemetryHandle | None = None
#: Set by shutdown_telemetry(): from then on, nothing sets telemetry up by itself again.
_shut_down = False


def build_resource(settings: Settings | None = None) -> Resource:
    """The resource of every signal: ``service.name`` (default ``nons``), ``service.version`` (NoN's version),
    ``deployment.environment.name`` from ``NON_ENVIRONMENT``, and ``OTEL_RESOURCE_ATTRIBUTES``.

    The standard variables win over NoN's values: ``OTEL_SERVICE_NAME`` over everything for the service name,
    then ``OTEL_RESOURCE_ATTRIBUTES`` (which may also set the version or the environment).
    """

    settings = settings or get_settings()
    defaults: dict[str, Any] = {
        "service.name": "nons",
        "service.version": __version__,
        "deployment.environment.name": settings.environment,
    }
    # Resource.create lets the attributes it is given override the environment's, so merge the environment's
    # (the detector reads OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME) over NoN's defaults first.
    from_env = OTELResourceDetector().detect().attributes
    return Resource.create({**defaults, **_with_current_environment_key(from_env)})


_ENVIRONMENT, _LEGACY_ENVIRONMENT = "deployment.environment.name", "deployment.environment"


def _with_current_environment_key(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with the environment the older semantic conventions' key (``deployment.environment``,
    which platforms that have not moved on still set) names under the current one too, unless that is given:
    NON_ENVIRONMENT's default under the current key beside it gave a staging service two environments, and the
    dashboards, which read the current key, called it development."""
    legacy = attributes.get(_LEGACY_ENVIRONMENT)
    if legacy is None or _ENVIRONMENT in attributes:
        return dict(attributes)
    return {**attributes, _ENVIRONMENT: legacy}


def configure_telemetry(settings: Settings | None = None) -> TelemetryHandle:
    """Install SDK providers and exporters from settings, once per process, and return what was set up.

    NoN calls this itself at the first network pass or agent run (unless both ``NON_ENABLE_TRACING`` and
    ``NON_ENABLE_METRICS`` are ``false``) and in ``get_observability()``; an application may call it earlier to
    choose the moment.

    - Providers an application installed already are kept; NoN then adds nothing to them but its buffer's span
      processor, when the tracer provider is an SDK one.
    - ``NON_ENABLE_TRACING=false`` / ``NON_ENABLE_METRICS=false`` leave that signal off entirely.
    - NoN's loggers are bridged to OTel logs (with trace and span ids) when a log exporter is configured; the
      root logger too with ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true``.
    - Export failures and drops are counted in ``get_observability().get_stats()["export"]``, never raised.
    - Everything is flushed at interpreter exit, on SIGTERM, and by :func:`shutdown_telemetry`, each waiting
      ``NON_TELEMETRY_EXIT_TIMEOUT`` (1.5 s) at most.
    """
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        settings = settings or get_settings()
        # Before anything is built: a typo or a malformed value must not leave half a setup behind. Only the
        # signals NoN exports itself: an application with its own providers (opentelemetry-instrument's, say)
        # may name exporters and protocols NoN does not build, and it is the one that reads them.
        variables = variables_nons_exports_by(settings)
        check_exporter_names(variables)
        if variables:
            check_otel_environment(_exports(variables))
        apply_log_level(settings, only_if_set=True)
        observability = observability_buffer()
        handle = TelemetryHandle(
            resource=_application_resource(settings) or _preloaded_resource(settings) or build_resource(settings)
        )
        # Providers are built first and made global only once every one of them was: setup is all or nothing
        # (the OpenTelemetry API lets a process set each global once), so a failed setup can be retried.
        commit: list[Callable[[], None]] = []
        try:
            if settings.enable_tracing:
                install_tracing(handle, observability, commit, settings.span_export)
            if settings.enable_metrics:
                install_metrics(handle, observability, commit)
            install_logs(handle, observability.export_stats, commit)
        except BaseException:
            discard(handle)
            raise
        for step in commit:
            step()
        flush_at_exit(handle, settings)
        _handle = handle
        return handle


def _exports(variables: tuple[str, ...]) -> dict[str, list[str]]:
    """What NoN builds, as :func:`~nons.observability.otel_env.check_otel_environment` takes it: for each exporter
    variable of a signal NoN installs the provider of (``OTEL_METRICS_EXPORTER``...), the signal (``METRICS``)
    and the exporters it names. A provider with no exporter still counts: its sampler, processor and limit
    variables are read, but no OTLP exporter's."""
    return {variable.split("_")[1]: exporter_names(variable) for variable in variables}


def ensure_telemetry() -> TelemetryHandle | None:
    """Set telemetry up unless it is set up already or was shut down (then ``None``): what a network pass,
    an agent run and ``get_observability()`` call. Costs one global read once telemetry is up."""
    handle = _handle
    if handle is not None:
        if handle.sigterm_pending and threading.current_thread() is threading.main_thread():
            handle.install_sigterm_handler()
        return handle
    if _shut_down:
        return None
    return configure_telemetry()


def sigterm_pending() -> bool:
    """Whether the SIGTERM handler is still to be installed by the main thread's first pass (telemetry was set
    up from another thread, which may not install one)."""
    handle = _handle
    return handle is not None and handle.sigterm_pending


def telemetry_is_configured() -> bool:
    """Whether telemetry is set up (and not shut down)."""
    return _handle is not None


_preloaded = False
#: The resource :func:`preload` built, with what it was built from.
_resource: tuple[tuple[str | int | None, ...], Resource] | None = None
#: What a resource is built from besides NON_ENVIRONMENT and the process (the SDK's default detectors give each
#: process its own ``service.instance.id``: a child forked between preload and set-up must not share it).
_RESOURCE_VARIABLES = ("OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME", "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")


def _resource_inputs(settings: Settings) -> tuple[str | int | None, ...]:
    return (os.getpid(), settings.environment, *(os.environ.get(name) for name in _RESOURCE_VARIABLES))


def _application_resource(settings: Settings) -> Resource | None:
    """The resource of the application's own tracer provider, when it has one: what NoN installs beside it (its
    meter and logger providers, for a tracing-only application) describes the same service. Built from the
    variables alone, NoN's metrics said service.name "nons" (and so did the application's own, through NoN's
    meter provider) while the application's spans said its own name. ``NON_ENVIRONMENT`` is added where the
    application's resource names no environment (its own attributes win)."""
    resource = getattr(trace.get_tracer_provider(), "resource", None)
    if not isinstance(resource, Resource):
        return None
    return Resource({"deployment.environment.name": settings.environment}).merge(
        Resource(_with_current_environment_key(resource.attributes), resource.schema_url)
    )


def _preloaded_resource(settings: Settings) -> Resource | None:
    """The resource :func:`preload` built, if the settings and variables it was built from are unchanged."""
    preloaded = _resource
    return preloaded[1] if preloaded is not None and preloaded[0] == _resource_inputs(settings) else None


def preload() -> None:
    """Import what :func:`configure_telemetry` will need (the exporters the ``OTEL_*`` variables name), and build
    the resource (older SDK releases scan every installed package's entry points for resource detectors: 20 to
    30 ms), so that it can run on the event loop's thread without stalling it: call this on a worker thread
    first."""
    global _preloaded, _resource
    settings = get_settings()
    import_exporters(settings.span_export)
    _resource = (_resource_inputs(settings), build_resource(settings))
    _preloaded = True


def preloaded() -> bool:
    """Whether :func:`preload` ran."""
    return _preloaded


def telemetry_was_shut_down() -> bool:
    """Whether :func:`shutdown_telemetry` ran: then nothing sets telemetry up by itself again."""
    return _shut_down


def shutdown_telemetry(timeout_millis: int | None = None) -> bool:
    """Flush and stop what :func:`configure_telemetry` installed, waiting ``timeout_millis`` at most
    (``NON_TELEMETRY_EXIT_TIMEOUT`` by default). Returns whether everything was exported in time (``True`` when
    there was nothing to shut down). Safe to call more than once. Afterwards nothing sets telemetry up by
    itself again (passes run, and ``get_observability()`` answers, without it)."""
    global _handle, _shut_down
    with _lock:
        handle, _handle = _handle, None
        _shut_down = True
    if handle is None:
        return True
    atexit.unregister(handle.shutdown_at_exit)
    if handle.sigterm_handler:
        uninstall_sigterm_flush()
    return handle.shutdown(timeout_millis)
