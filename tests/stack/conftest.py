"""A real Prometheus for tests, and a harness that runs the Grafana dashboards' PromQL against it.

The Prometheus harness is in ``prometheus_server.py``, the stack's programs in ``otel_stack.py``, and the
workload runs in ``workload_runs.py``; this file makes fixtures of them.

Fixtures
--------
``prometheus`` (session)
    A :class:`PrometheusServer`: Prometheus v3 as ``scripts/stack-binaries`` builds it (the compose file's
    release; without it, outside CI, Debian's 2.42) started on 127.0.0.1 on a free port, with a temporary
    storage directory and a 1 s scrape interval; stopped at the end of the session. Point it at an
    endpoint with ``prometheus.scrape([target], job=...)``, wait for data with ``prometheus.wait_for_scrapes(job)``
    and run PromQL with ``prometheus.query(expr)``. Without the binary the fixture skips, except in CI
    (``CI=true``), where it fails: CI must install it (``apt-get install prometheus``).
``otel_metrics_endpoint`` (function)
    An :class:`OTelPrometheusEndpoint`: an OpenTelemetry SDK ``MeterProvider`` whose ``PrometheusMetricReader``
    is served over HTTP on 127.0.0.1. Record with ``otel_metrics_endpoint.meter_provider`` (or register
    ``.reader`` in your own provider) and scrape ``otel_metrics_endpoint.target``.
``serve_otel_metrics`` (session)
    The context manager :func:`serve_otel_metrics` behind ``otel_metrics_endpoint``, for a module-scoped
    endpoint or other settings: ``with serve_otel_metrics(service_name="x") as endpoint: ...``.
``dashboard_queries`` (session)
    The function :func:`extract_dashboard_queries`: every panel's PromQL from the generated dashboards, with the
    template variables substituted so that Prometheus can run it (``$service``, ``$provider``, ``$model``,
    ``$network`` -> ``.*`` as "All" unless given; ``$__rate_interval`` -> 30s, ``$__interval`` -> 15s,
    ``$__range`` -> 5m).
``variable_queries`` (session)
    The function :func:`extract_variable_queries`: the dashboards' ``label_values(selector, label)`` variables;
    run one with ``prometheus.label_values(v.label, v.selector)``.
``otel_stack`` (session), ``start_otel_stack`` (session)
    The bundled stack on loopback: Jaeger, the collector and Prometheus v3 built by ``scripts/stack-binaries``,
    each with the repository's config (``otel_stack.py``, ``workload_runs.OTelStack``); ``start_otel_stack`` is
    the context manager, for a test that needs a stack of its own.
``workload_runs`` (session), ``workload``, ``otlp_workload``
    ``workload.py`` run once per route and scraped (``workload_runs.ScrapedWorkload``): ``workload`` is
    parametrized over the Prometheus reader, OTLP gRPC and OTLP HTTP, ``otlp_workload`` over the two OTLP routes.

A typical integration test::

    def test_workload_fills_the_dashboards(prometheus, otel_metrics_endpoint, dashboard_queries):
        run_workload(meter_provider=otel_metrics_endpoint.meter_provider)
        prometheus.scrape([otel_metrics_endpoint.target], job="workload")
        prometheus.wait_for_scrapes("workload", count=3)
        problems = prometheus.queries_without_data(dashboard_queries())
        assert not problems, "\n".join(problems)

Keep the workload recording while Prometheus scrapes (run it in a background thread or loop until
``wait_for_scrapes`` returns): ``rate()`` needs a counter that moved between two scrapes, and a percentile of a
histogram that did not move is NaN, which ``queries_without_data`` reports as no data.

Metric names: the endpoint uses the same naming as the collector's prometheus exporter (``nons.cost`` in USD
-> ``nons_cost_USD_total``), and by default copies the ``service.name`` resource attribute onto every series as
``service_name``, as the collector's ``resource_constant_labels`` does in the compose stack.
"""

from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_server import PrometheusServer, start_prometheus

# --------------------------------------------------------------------------------------- template variables

#: Substitutions for the dashboards' variables with every multi-value variable set to "All". Grafana sends
#: "All" as the variable's allValue, ".*", which also matches series that lack the label.
ALL_VALUES: dict[str, str] = {
    "service": ".*",
    "provider": ".*",
    "model": ".*",
    "network": ".*",
    # The "Simulated cost" switch's default: cost panels leave the simulated provider's money out.
    "exclude_provider": "nons.simulated",
}

#: Grafana's built-in interval variables, fixed to values that suit a Prometheus scraping every second:
#: ``$__rate_interval`` must cover at least two scrapes.
BUILTIN_VALUES: dict[str, str] = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__range": "5m",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute_variables(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana template variables in ``expr`` as Grafana would before sending it to Prometheus.

    ``values`` maps a variable name (without ``$``) to its text; it is merged over :data:`ALL_VALUES` and
    :data:`BUILTIN_VALUES`. Handles ``$name``, ``${name}`` and ``${name:format}``. Raises ``KeyError`` for a
    variable with no value, so a new variable cannot slip through untested.
    """
    merged = {**BUILTIN_VALUES, **ALL_VALUES, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in merged:
            raise KeyError(f"no value for template variable ${name} in: {expr}")
        return merged[name]

    return _VARIABLE.sub(replace, expr)


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL target of one dashboard panel."""

    dashboard: str  # dashboard uid
    panel: str  # panel title
    ref_id: str
    expr: str  # as written in the dashboard, with template variables
    promql: str  # variables substituted: ready for Prometheus
    instant: bool

    def describe(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref_id}]: {self.promql}"


def _walk_panels(panels: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        # A collapsed row holds its panels inside itself.
        yield from _walk_panels(panel.get("panels", []))


def extract_dashboard_queries(
    values: Mapping[str, str] | None = None,
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[DashboardQuery]:
    """Every panel target's PromQL, with template variables substituted (see :func:`substitute_variables`).

    ``dashboards`` maps file name to dashboard JSON model; by default the dashboards are generated afresh with
    ``nons.observability.dashboards.build_dashboards()``. ``values`` overrides variable values, e.g.
    ``{"provider": "openai"}``; the default is "All" for every variable.
    """
    if dashboards is None:
        from nons.observability.dashboards import build_dashboards

        dashboards = build_dashboards()
    queries = []
    for model in dashboards.values():
        for panel in _walk_panels(model.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr:
                    continue
                queries.append(
                    DashboardQuery(
                        dashboard=str(model["uid"]),
                        panel=str(panel.get("title", "")),
                        ref_id=str(target.get("refId", "")),
                        expr=expr,
                        promql=substitute_variables(expr, values),
                        instant=bool(target.get("instant", False)),
                    )
                )
    return queries


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


@dataclass(frozen=True)
class VariableQuery:
    """A dashboard query variable of the form ``label_values(selector, label)``."""

    dashboard: str
    name: str
    selector: str  # variables substituted; empty when the query has no selector
    label: str


def extract_variable_queries(
    values: Mapping[str, str] | None = None,
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[VariableQuery]:
    """Every ``label_values`` query variable of the dashboards (see :meth:`PrometheusServer.label_values`)."""
    if dashboards is None:
        from nons.observability.dashboards import build_dashboards

        dashboards = build_dashboards()
    found = []
    for model in dashboards.values():
        for variable in model.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable["query"]
            text = query if isinstance(query, str) else query.get("query", "")
            match = _LABEL_VALUES.match(text.strip())
            if match is None:
                raise ValueError(f"{model['uid']}: unsupported variable query {text!r}")
            found.append(
                VariableQuery(
                    dashboard=str(model["uid"]),
                    name=str(variable["name"]),
                    selector=substitute_variables(match.group("selector") or "", values),
                    label=match.group("label"),
                )
            )
    return found


# --------------------------------------------------------------------------------------------- prometheus


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """A Prometheus shared by the session (see the module docstring). Use a distinct job name per test."""
    with start_prometheus() as server:
        yield server


# ------------------------------------------------------------------------------------ otel metrics endpoint


@dataclass
class OTelPrometheusEndpoint:
    """An OpenTelemetry ``PrometheusMetricReader`` served over HTTP. Use :func:`serve_otel_metrics`."""

    reader: Any  # opentelemetry.exporter.prometheus.PrometheusMetricReader
    meter_provider: Any  # opentelemetry.sdk.metrics.MeterProvider, or None when not created here
    port: int
    _server: Any = None

    @property
    def target(self) -> str:
        """The scrape target, ``127.0.0.1:PORT``, for :meth:`PrometheusServer.scrape`."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def text(self) -> str:
        """The exposition text as Prometheus would scrape it now (handy in failure messages)."""
        with urllib.request.urlopen(self.url, timeout=10) as response:
            body: bytes = response.read()
            return body.decode()


@contextlib.contextmanager
def serve_otel_metrics(
    service_name: str = "nons-tests",
    resource_attributes: Mapping[str, str] | None = None,
    copy_resource_attributes: Sequence[str] = ("service.name",),
    create_meter_provider: bool = True,
) -> Iterator[OTelPrometheusEndpoint]:
    """Serve an OTel SDK ``PrometheusMetricReader`` on 127.0.0.1 (free port) for the ``with`` block.

    ``copy_resource_attributes`` names the resource attributes put on every series as labels (dots become
    underscores), mirroring the collector's ``resource_constant_labels``. With
    ``create_meter_provider=False`` no ``MeterProvider`` is made: register ``endpoint.reader`` in your own
    (a reader belongs to one provider). To have code that uses the global API record into it, call
    ``opentelemetry.metrics.set_meter_provider(endpoint.meter_provider)`` (possible once per process).
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import CollectorRegistry, start_http_server

    # A registry of its own: the global one would mix in this process's Python metrics and earlier readers.
    registry = CollectorRegistry()
    copied = frozenset(copy_resource_attributes)
    reader = PrometheusMetricReader(registry=registry, resource_attribute_filter=lambda key: key in copied)
    provider = None
    if create_meter_provider:
        resource = Resource.create({"service.name": service_name, **(resource_attributes or {})})
        provider = MeterProvider(metric_readers=[reader], resource=resource)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    endpoint = OTelPrometheusEndpoint(reader=reader, meter_provider=provider, port=server.server_port, _server=server)
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if provider is not None:
            provider.shutdown()


@pytest.fixture(name="serve_otel_metrics", scope="session")
def _serve_otel_metrics_fixture() -> Callable[..., contextlib.AbstractContextManager[OTelPrometheusEndpoint]]:
    """:func:`serve_otel_metrics`, for fixtures of a wider scope or with other settings than the default."""
    return serve_otel_metrics


@pytest.fixture
def otel_metrics_endpoint() -> Iterator[OTelPrometheusEndpoint]:
    """An OTel Prometheus endpoint with its own ``MeterProvider`` (service.name ``nons-tests``)."""
    with serve_otel_metrics() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def dashboard_queries() -> Callable[..., list[DashboardQuery]]:
    """:func:`extract_dashboard_queries`: call it with variable values, e.g. ``dashboard_queries({"model": "x"})``."""
    return extract_dashboard_queries


@pytest.fixture(scope="session")
def variable_queries() -> Callable[..., list[VariableQuery]]:
    """:func:`extract_variable_queries`: the dashboards' ``label_values`` variables, with values substituted."""
    return extract_variable_queries


# ------------------------------------------------------------------------------------ the stack and the workload


@contextlib.contextmanager
def start_otel_stack(workdir: Path) -> Iterator[Any]:
    """Jaeger, the collector and Prometheus v3 on loopback, each with the repository's config (see
    ``otel_stack.py``), for the ``with`` block: a :class:`workload_runs.OTelStack`. Skips without the built
    binaries, fails in CI."""
    from otel_stack import Collector, Jaeger, render_prometheus_config, require_stack_binary
    from workload_runs import OTelStack

    binaries = {name: require_stack_binary(name) for name in ("otelcol", "jaeger", "prometheus")}
    jaeger = Jaeger.create(binaries["jaeger"], workdir)
    collector = Collector.create(binaries["otelcol"], workdir, jaeger)
    try:
        jaeger.start()
        collector.start()
        with start_prometheus(
            binaries["prometheus"],
            base_config=lambda port: render_prometheus_config(collector.compose_addresses(port)),
        ) as server:
            yield OTelStack(jaeger, collector, server)
    finally:
        collector.stop()
        jaeger.stop()


@pytest.fixture(name="start_otel_stack", scope="session")
def _start_otel_stack_fixture() -> Callable[[Path], contextlib.AbstractContextManager[Any]]:
    """:func:`start_otel_stack`, for a test that needs a stack of its own (one it may restart)."""
    return start_otel_stack


@pytest.fixture(scope="session")
def otel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """:func:`start_otel_stack` for the session."""
    with start_otel_stack(tmp_path_factory.mktemp("otel-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def workload_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """``get(route)``: ``workload.py`` run by ``route`` and scraped (a :class:`workload_runs.ScrapedWorkload`),
    run on first use and kept for the session, so each route runs once whichever tests ask for it."""
    from workload_runs import run_workload

    runs: dict[str, Any] = {}
    failures: dict[str, BaseException] = {}

    def get(route: str) -> Any:
        if route in failures:
            # One failed run is the answer for every test of the route: running it again per test only repeats
            # the failure (and its minutes), against a Prometheus that already holds the first run's series.
            raise AssertionError(f"the {route} workload failed earlier in this session") from failures[route]
        if route not in runs:
            workdir = tmp_path_factory.mktemp(f"workload-{route}")
            try:
                if route == "prometheus-reader":
                    runs[route] = run_workload(route, request.getfixturevalue("prometheus"), workdir)
                else:
                    stack = request.getfixturevalue("otel_stack")
                    runs[route] = run_workload(route, stack.prometheus, workdir, stack)
            except BaseException as error:
                failures[route] = error
                raise
        return runs[route]

    return get


@pytest.fixture(params=["prometheus-reader", "otlp-grpc", "otlp-http"])
def workload(request: pytest.FixtureRequest, workload_runs: Callable[[str], Any]) -> Any:
    """The workload by each route: through the SDK's Prometheus reader, and through the collector over OTLP
    gRPC and OTLP HTTP."""
    return workload_runs(request.param)


@pytest.fixture(params=["otlp-grpc", "otlp-http"])
def otlp_workload(request: pytest.FixtureRequest, workload_runs: Callable[[str], Any]) -> Any:
    """The workload by the compose stack's route: OTLP gRPC and OTLP HTTP to the collector."""
    return workload_runs(request.param)
