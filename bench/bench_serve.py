"""The HTTP service under load, against calling ``forward()`` directly. Prints figures; asserts nothing.

    python bench/bench_serve.py                              # 200 callers for 20 s (about a minute in all)
    python bench/bench_serve.py --callers 20 --seconds 3     # a quick run

The same network (three simulated generators, ``--latency`` seconds per call, then pack_candidates and
majority) runs two ways, each in a process of its own with telemetry set up the same way (SDK providers, no
exporter):

direct
    ``await network.run(text)`` in one process: one caller for ``--sequential-seconds``, then ``--callers``
    concurrent callers for ``--seconds``.
service
    ``nons serve`` on loopback, driven over HTTP by ``wrk`` (Debian's ``wrk``: one keep-alive connection per
    caller, each sending its next request when the last one is answered): the same two phases. Every request
    carries a bearer token and passes the rate limiter, the input rules, the FastAPI instrumentation's server
    span, and JSON both ways. wrk is written in C, so the load generator takes little of the CPU the server
    needs (a Python client took more CPU per request than the server itself).

The overhead per request is the difference of the one-caller means. The server's CPU time per request is read
from /proc; peak RSS is each process's high-water mark (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "bench-token-0123456789abcdef"
TEXT = "What makes a compound AI system reliable in production?"

# wrk's script: POST the run request, and print the figures as JSON at the end (latencies in microseconds).
WRK_SCRIPT = (
    'wrk.method = "POST"\n'
    f"wrk.body = '{json.dumps({'input': TEXT})}'\n"
    'wrk.headers["Content-Type"] = "application/json"\n'
    f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
    """\
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "mean_us": %f}\\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""
)


def spec(latency: float) -> str:
    return f"""\
version: 1
models:
  sim: {{model: mock/gpt-4o-mini, extra_params: {{mock_seed: 7, mock_latency_s: {latency}}}}}
networks:
  bench:
    layers: ["3 x generate@sim", pack_candidates, majority]
"""


def _figures(requests: int, errors: int, seconds: float, p50: float, p99: float, mean: float) -> dict[str, Any]:
    return {"requests": requests, "errors": errors, "throughput": requests / seconds if seconds else 0.0,
            "p50_ms": p50, "p99_ms": p99, "mean_ms": mean}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- direct: run in a child process, prints JSON ----------------------------------------------------------------


async def _callers(network: Any, callers: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                await network.run(TEXT)
                latencies.append(time.perf_counter() - started)
            except Exception:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    mean = statistics.fmean(latencies) * 1000 if latencies else float("nan")
    return _figures(len(latencies), errors, elapsed, pct(0.5), pct(0.99), mean)


async def _direct(args: argparse.Namespace) -> dict[str, Any]:
    from nons.observability import configure_telemetry
    from nons.spec import loads_spec

    configure_telemetry()
    network = loads_spec(spec(args.latency)).networks["bench"]
    await _callers(network, 1, 1.0)  # warm up: imports, first calls
    sequential = await _callers(network, 1, args.sequential_seconds)
    cpu = time.process_time()
    loaded = await _callers(network, args.callers, args.seconds)
    loaded["cpu_ms_per_request"] = (time.process_time() - cpu) * 1000 / max(1, loaded["requests"])
    return {"sequential": sequential, "load": loaded, "peak_rss_mb": _peak_rss_mb(os.getpid())}


# --- service: a server process, driven by wrk ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bench_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV")
    return {
        **{k: v for k, v in os.environ.items() if k in keep},
        "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
    }


def _wrk(wrk: str, url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    completed = subprocess.run(
        [wrk, f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "120s",
         "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 300,
    )
    raw = json.loads(completed.stdout.strip().splitlines()[-1])
    return _figures(raw["requests"] - raw["non2xx"], raw["non2xx"] + raw["socket_errors"], raw["duration_us"] / 1e6,
                    raw["p50_us"] / 1000, raw["p99_us"] / 1000, raw["mean_us"] / 1000)


def _service(args: argparse.Namespace, wrk: str, workdir: Path) -> dict[str, Any]:
    """Start ``nons serve``, load it with wrk, then stop it with SIGTERM as an orchestrator would."""
    spec_path = workdir / "bench.yaml"
    spec_path.write_text(spec(args.latency), encoding="utf-8")
    script = workdir / "run.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    port = _free_port()
    env = {**_bench_env(), "NON_SERVE_TOKENS": f"bench:{TOKEN}", "NON_SERVE_LOOP": args.loop}
    with (workdir / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "nons.cli", "serve", str(spec_path), "--port", str(port),
             "--rate-limit", "100000000/minute"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        )
    url = f"http://127.0.0.1:{port}/v1/networks/bench/run"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((workdir / "serve.log").read_text()) from None
                time.sleep(0.1)
        _wrk(wrk, url, script, 1, 1)  # warm up
        sequential = _wrk(wrk, url, script, 1, args.sequential_seconds)
        cpu = _cpu_seconds(server.pid)
        loaded = _wrk(wrk, url, script, args.callers, args.seconds)
        loaded["cpu_ms_per_request"] = (_cpu_seconds(server.pid) - cpu) * 1000 / max(1, loaded["requests"])
        figures = {"sequential": sequential, "load": loaded, "peak_rss_mb": _peak_rss_mb(server.pid)}
        server.send_signal(signal.SIGTERM)
        figures["exit_code"] = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    return figures


def _row(name: str, figures: dict[str, Any]) -> str:
    return (
        f"  {name:<28} {figures['requests']:>8} {figures['errors']:>6} {figures['throughput']:>9.1f} "
        f"{figures['p50_ms']:>9.1f} {figures['p99_ms']:>9.1f} {figures['mean_ms']:>9.1f}"
    )


def report(args: argparse.Namespace, direct: dict[str, Any], served: dict[str, Any]) -> None:
    print(f"network: 3 simulated generators ({args.latency * 1000:.0f} ms a call) -> pack_candidates -> majority")
    print(f"  {'':<28} {'requests':>8} {'errors':>6} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    print(_row("direct, one caller", direct["sequential"]))
    print(_row(f"service ({args.loop}), one caller", served["sequential"]))
    print(_row(f"direct, {args.callers} callers", direct["load"]))
    print(_row(f"service ({args.loop}), {args.callers} callers", served["load"]))
    overhead = served["sequential"]["mean_ms"] - direct["sequential"]["mean_ms"]
    print(f"overhead per request over forward(), one caller: {overhead:.2f} ms")
    print(
        f"CPU per request under load: direct {direct['load']['cpu_ms_per_request']:.2f} ms, "
        f"service process {served['load']['cpu_ms_per_request']:.2f} ms"
    )
    print(f"peak RSS: direct {direct['peak_rss_mb']:.0f} MB, service {served['peak_rss_mb']:.0f} MB")
    print(f"service exit code after SIGTERM: {served['exit_code']}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
          "(other processes compete for them)")
    errors = sum(figures["errors"] for run in (direct, served) for figures in (run["sequential"], run["load"]))
    print(f"errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sequential-seconds", type=float, default=10.0, help="the one-caller phase (10 s)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per simulated call (default 0.05)")
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"], help="the service's event loop")
    parser.add_argument("--direct-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_child:
        print(json.dumps(asyncio.run(_direct(args))))
        return
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("bench_serve needs wrk, the HTTP load generator: apt-get install -y --no-install-recommends wrk")
    child = subprocess.run(
        [sys.executable, __file__, "--direct-child", "--callers", str(args.callers), "--seconds", str(args.seconds),
         "--sequential-seconds", str(args.sequential_seconds), "--latency", str(args.latency)],
        capture_output=True, text=True, env=_bench_env(), check=True,
    )
    direct = json.loads(child.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory(prefix="nons-bench-serve-") as workdir:
        served = _service(args, wrk, Path(workdir))
    report(args, direct, served)
    errors = sum(figures["errors"] for run in (direct, served) for figures in (run["sequential"], run["load"]))
    if errors or served["exit_code"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
