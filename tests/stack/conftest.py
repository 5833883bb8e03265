"""A real Prometheus for tests, and a harness that runs the Grafana dashboards' PromQL against it.

Everything here is self-contained (it imports nothing from other test modules), so this file can move to
``tests/conftest.py`` unchanged when other test folders need it.

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
``service_name``, as the collector's ``resource_to_telemetry_conversion`` does in the compose stack.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# --------------------------------------------------------------------------------------- template variables

#: Substitutions for the dashboards' variables with every multi-value variable set to "All". Grafana sends
#: "All" as the variable's allValue, ".*", which also matches series that lack the label.
ALL_VALUES: dict[str, str] = {
    "service": ".*",
    "provider": ".*",
    "model": ".*",
    "network": ".*",
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


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str) -> str:
    """Path of an executable; skip the test when it is missing, but fail in CI (``CI=true``)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install -y --no-install-recommends prometheus)"
        if _in_ci():
            pytest.fail(f"{message}; CI must install it", pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusError(RuntimeError):
    """Prometheus refused a query or did not become ready."""


def _wait(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    # Polls until the condition holds: tests wait for an event, never for a fixed time.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class PrometheusServer:
    """A Prometheus process on 127.0.0.1 with a generated configuration. Use :func:`start_prometheus`."""

    binary: str
    port: int
    workdir: Path
    scrape_interval: str = "1s"
    jobs: dict[str, list[str]] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    #: A configuration to start from, given the server's port (a rendered otel/prometheus.yml); ``jobs`` are
    #: added to its scrape configs.
    base_config: Callable[[int], dict[str, Any]] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def _write_config(self) -> None:
        config: dict[str, Any] = (
            self.base_config(self.port)
            if self.base_config is not None
            else {
                "global": {
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "evaluation_interval": self.scrape_interval,
                },
                "scrape_configs": [],
            }
        )
        config["scrape_configs"] = list(config["scrape_configs"]) + [
            # honor_labels as in otel/prometheus.yml: keep the exporter's own job/instance labels if any.
            {"job_name": job, "honor_labels": True, "static_configs": [{"targets": targets}]}
            for job, targets in self.jobs.items()
        ]
        # JSON is valid YAML, and needs no YAML library.
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until ``/-/ready`` answers."""
        self._write_config()
        storage = self.workdir / "data"
        storage.mkdir(exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Lets scrape() apply a new target list with POST /-/reload instead of a restart.
                "--web.enable-lifecycle",
                # As in the compose stack.
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        _wait(ready, timeout, "prometheus /-/ready")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        """Prometheus's own log output so far (for failure messages)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # --- scraping -----------------------------------------------------------------------------------------

    def scrape(self, targets: Sequence[str], job: str = "nons") -> None:
        """Scrape ``targets`` (``host:port``, path ``/metrics``) every second as ``job``; other jobs remain.

        Calling it again with the same ``job`` replaces that job's targets; an empty list removes the job.
        """
        if targets:
            self.jobs[job] = list(targets)
        else:
            self.jobs.pop(job, None)
        self._write_config()
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as error:
            raise PrometheusError(f"reload failed: {error.read().decode(errors='replace')}") from error

    def wait_for_scrapes(self, job: str, count: int = 3, timeout: float = 30.0) -> None:
        """Wait until every target of ``job`` was scraped successfully at least ``count`` times.

        Three scrapes give every ``rate()`` over ``$__rate_interval`` two samples to work with.
        """
        expected = len(self.jobs.get(job, []))
        if expected == 0:
            raise ValueError(f"job {job!r} has no targets; call scrape() first")
        promql = f'sum_over_time(up{{job="{job}"}}[5m])'

        def scraped() -> bool:
            results = self.query(promql)
            return len(results) >= expected and all(float(r["value"][1]) >= count for r in results)

        try:
            _wait(scraped, timeout, f"{count} successful scrapes of job {job!r}", interval=0.2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; targets: {self.targets(job)}") from None

    def targets(self, job: str | None = None) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``), optionally of one job: health, lastError, ..."""
        data = self._get("/api/v1/targets", {"state": "active"})
        active: list[dict[str, Any]] = data["activeTargets"]
        return [t for t in active if job is None or t.get("labels", {}).get("job") == job]

    # --- querying -----------------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str | Sequence[str]]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read())
            except ValueError:
                raise PrometheusError(f"{path} {params}: HTTP {error.code}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Run an instant query (``/api/v1/query``) and return its result list.

        For a vector each item is ``{"metric": {labels}, "value": [time, "text"]}``; a scalar result comes back
        as one item with empty labels. Raises :class:`PrometheusError` (with Prometheus's message) when the
        query does not parse or fails.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        """Run a range query (``/api/v1/query_range``), as Grafana does for time-series panels."""
        data = self._get(
            "/api/v1/query_range",
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def exemplars(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        """Exemplars of the series ``promql`` selects (``/api/v1/query_exemplars``): one item per series, with
        ``seriesLabels`` and ``exemplars`` (``labels`` such as ``trace_id``, ``value``, ``timestamp``)."""
        result: list[dict[str, Any]] = self._get(
            "/api/v1/query_exemplars", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )
        return result

    def label_values(self, label: str, selector: str = "") -> list[str]:
        """Values of ``label`` (on series matching ``selector``): what Grafana's ``label_values()`` returns."""
        params: dict[str, str | Sequence[str]] = {}
        if selector:
            params["match[]"] = [selector]
        values: list[str] = self._get(f"/api/v1/label/{label}/values", params)
        return values

    def metric_names(self, selector: str = '{__name__=~".+"}') -> set[str]:
        """Names of the metrics that have series matching ``selector``."""
        return set(self.label_values("__name__", selector))

    def query_values(self, promql: str, at: float | None = None) -> list[float]:
        """The finite sample values of an instant query (NaN and ±Inf dropped), now or ``at`` (epoch s)."""
        values = [float(item["value"][1]) for item in self.query(promql, at=at)]
        return [value for value in values if math.isfinite(value)]

    def queries_without_data(self, queries: Iterable[DashboardQuery], at: float | None = None) -> list[str]:
        """Describe each dashboard query that fails or returns no finite value; empty when all have data.

        Collects every problem instead of stopping at the first, so one run shows all broken panels. The
        queries are evaluated now, or ``at`` (epoch s).
        """
        problems = []
        for query in queries:
            try:
                if not self.query_values(query.promql, at=at):
                    problems.append(f"no data: {query.describe()}")
            except PrometheusError as error:
                problems.append(f"error: {query.describe()}\n    {error}")
        return problems


def prometheus_binary() -> str:
    """Prometheus v3 as scripts/stack-binaries builds it (the release the compose file runs), else Debian's.

    In CI the built one is required: the dashboards' PromQL must run on the version users get.
    """
    from otel_stack import in_ci, require_stack_binary, stack_binary

    built = stack_binary("prometheus")
    if built is not None:
        return built
    if in_ci():
        return require_stack_binary("prometheus")
    return require_binary("prometheus")


@contextlib.contextmanager
def start_prometheus(
    binary: str | None = None,
    scrape_interval: str = "1s",
    timeout: float = 30.0,
    base_config: Callable[[int], dict[str, Any]] | None = None,
) -> Iterator[PrometheusServer]:
    """Run a Prometheus on 127.0.0.1 (free port, temporary storage) for the duration of the ``with`` block.

    ``base_config`` makes its configuration from the server's port (see :attr:`PrometheusServer.base_config`).
    """
    binary = binary or prometheus_binary()
    with tempfile.TemporaryDirectory(prefix="nons-prometheus-") as workdir:
        server = PrometheusServer(
            binary=binary,
            port=free_port(),
            workdir=Path(workdir),
            scrape_interval=scrape_interval,
            base_config=base_config,
        )
        try:
            server.start(timeout=timeout)
            yield server
        finally:
            server.stop()


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
    underscores), mirroring the collector's ``resource_to_telemetry_conversion``. With
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

    def get(route: str) -> Any:
        if route not in runs:
            workdir = tmp_path_factory.mktemp(f"workload-{route}")
            if route == "prometheus-reader":
                runs[route] = run_workload(route, request.getfixturevalue("prometheus"), workdir)
            else:
                stack = request.getfixturevalue("otel_stack")
                runs[route] = run_workload(route, stack.prometheus, workdir, stack)
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
