"""A real Prometheus for tests: :class:`PrometheusServer` started on 127.0.0.1 with a generated (or rendered)
configuration, and its query helpers. ``conftest.py`` makes the ``prometheus`` fixture from it."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from otel_stack import free_port, in_ci, require_stack_binary, stack_binary, wait_for

if TYPE_CHECKING:
    from conftest import DashboardQuery


def require_binary(name: str) -> str:
    """Path of an executable; skip the test when it is missing, but fail in CI (``CI=true``)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install -y --no-install-recommends prometheus)"
        if in_ci():
            pytest.fail(f"{message}; CI must install it", pytrace=False)
        pytest.skip(message)
    return path


class PrometheusError(RuntimeError):
    """Prometheus refused a query or did not become ready."""


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

        wait_for(ready, timeout, "prometheus /-/ready")

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
            wait_for(scraped, timeout, f"{count} successful scrapes of job {job!r}", interval=0.2)
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
