"""The HTTP service under load, against calling ``forward()`` directly. Prints figures; asserts nothing.

    python bench/bench_serve.py                              # 200 callers for 20 s (about a minute in all)
    python bench/bench_serve.py --callers 20 --seconds 3     # a quick run

The same network (three simulated generators, ``--latency`` seconds per call, then pack_candidates and
majority) runs two ways, each in a process of its own with telemetry set up the same way (SDK providers, no
exporter):

direct
    ``await network.run(text)`` in one process: first one caller after another (the latency of one pass), then
    ``--callers`` concurrent callers for ``--seconds``.
service
    ``nons serve`` on loopback, driven over HTTP by this process (httpx, one connection per caller): the same
    two phases. Requests carry a bearer token and pass the rate limiter, the input rules, the FastAPI
    instrumentation's server span, and JSON both ways.

The overhead per request is the difference of the sequential means; the server's CPU time per request is
read from /proc. Peak RSS is each process's high-water mark (VmHWM). The load generator shares the machine
with the server, so on a small machine the service's throughput is a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-token-0123456789abcdef"
TEXT = "What makes a compound AI system reliable in production?"


def spec(latency: float) -> str:
    return f"""\
version: 1
models:
  sim: {{model: mock/gpt-4o-mini, extra_params: {{mock_seed: 7, mock_latency_s: {latency}}}}}
networks:
  bench:
    layers: ["3 x generate@sim", pack_candidates, majority]
"""


def _summary(latencies: list[float], seconds: float, errors: int) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput": len(latencies) / seconds if seconds else 0.0,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


async def _load(call: Callable[[], Awaitable[bool]], callers: int, seconds: float) -> dict[str, Any]:
    """``callers`` loops calling ``call`` until ``seconds`` have passed; latencies of the successful calls."""
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            started = time.perf_counter()
            if await call():
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return _summary(latencies, time.perf_counter() - started, errors)


async def _sequential(call: Callable[[], Awaitable[bool]], count: int) -> dict[str, Any]:
    for _ in range(min(20, count)):  # warm up: imports, first clients, code paths
        await call()
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        if await call():
            latencies.append(time.perf_counter() - t)
        else:
            errors += 1
    return _summary(latencies, time.perf_counter() - started, errors)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- direct: run in a child process, prints JSON ----------------------------------------------------------------


async def _direct(args: argparse.Namespace) -> dict[str, Any]:
    from nons.observability.setup import configure_telemetry
    from nons.spec import loads_spec

    configure_telemetry()
    network = loads_spec(spec(args.latency)).networks["bench"]

    async def call() -> bool:
        try:
            await network.run(TEXT)
            return True
        except Exception:
            return False

    sequential = await _sequential(call, args.sequential)
    cpu = time.process_time()
    loaded = await _load(call, args.callers, args.seconds)
    loaded["cpu_ms_per_request"] = (time.process_time() - cpu) * 1000 / max(1, loaded["requests"])
    return {"sequential": sequential, "load": loaded, "peak_rss_mb": _peak_rss_mb(os.getpid())}


# --- service: a server process, driven from here ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    spec_path = workdir / "bench.yaml"
    spec_path.write_text(spec(args.latency), encoding="utf-8")
    port = _free_port()
    env = {**_bench_env(), "NON_SERVE_TOKENS": f"bench:{TOKEN}"}
    with (workdir / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "nons.cli", "serve", str(spec_path), "--port", str(port),
             "--rate-limit", "100000000/minute"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        )
    return server, port


async def _drive(args: argparse.Namespace, server: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/v1/networks/bench/run"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    pool = httpx.Limits(max_connections=args.callers + 10, max_keepalive_connections=args.callers + 10)
    async with httpx.AsyncClient(timeout=120, limits=pool) as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nons serve did not start") from None
                await asyncio.sleep(0.1)

        async def call() -> bool:
            try:
                response = await client.post(url, json={"input": TEXT}, headers=headers)
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        sequential = await _sequential(call, args.sequential)
        cpu, client_cpu = _cpu_seconds(server.pid), time.process_time()
        loaded = await _load(call, args.callers, args.seconds)
        done = max(1, loaded["requests"])
        loaded["cpu_ms_per_request"] = (_cpu_seconds(server.pid) - cpu) * 1000 / done
        loaded["client_cpu_ms_per_request"] = (time.process_time() - client_cpu) * 1000 / done
    return {"sequential": sequential, "load": loaded, "peak_rss_mb": _peak_rss_mb(server.pid)}


def _service(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start ``nons serve``, drive it, then stop it with SIGTERM as an orchestrator would."""
    server, port = _start_server(args, workdir)
    try:
        try:
            figures = asyncio.run(_drive(args, server, port))
        except RuntimeError:
            raise RuntimeError((workdir / "serve.log").read_text()) from None
        server.send_signal(signal.SIGTERM)
        figures["exit_code"] = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    return figures


def _bench_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV")
    return {
        **{k: v for k, v in os.environ.items() if k in keep},
        "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
    }


def _row(name: str, figures: dict[str, Any]) -> str:
    return (
        f"  {name:<28} {figures['requests']:>8} {figures['errors']:>6} {figures['throughput']:>9.1f} "
        f"{figures['p50_ms']:>9.1f} {figures['p99_ms']:>9.1f} {figures['mean_ms']:>9.1f}"
    )


def report(args: argparse.Namespace, direct: dict[str, Any], served: dict[str, Any]) -> None:
    print(f"network: 3 simulated generators ({args.latency * 1000:.0f} ms a call) -> pack_candidates -> majority")
    print(f"  {'':<28} {'requests':>8} {'errors':>6} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    print(_row("direct, one caller", direct["sequential"]))
    print(_row("service, one caller", served["sequential"]))
    print(_row(f"direct, {args.callers} callers", direct["load"]))
    print(_row(f"service, {args.callers} callers", served["load"]))
    overhead = served["sequential"]["mean_ms"] - direct["sequential"]["mean_ms"]
    print(f"overhead per request over forward(), one caller: {overhead:.2f} ms")
    print(
        f"CPU per request under load: direct {direct['load']['cpu_ms_per_request']:.2f} ms; service process "
        f"{served['load']['cpu_ms_per_request']:.2f} ms, plus the load generator's "
        f"{served['load']['client_cpu_ms_per_request']:.2f} ms (httpx, same machine)"
    )
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end (other processes compete for them)")
    print(f"peak RSS: direct {direct['peak_rss_mb']:.0f} MB, service {served['peak_rss_mb']:.0f} MB")
    print(f"service exit code after SIGTERM: {served['exit_code']}")
    errors = direct["load"]["errors"] + served["load"]["errors"] + served["sequential"]["errors"]
    print(f"errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sequential", type=int, default=200, help="passes one after another (default 200)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per simulated call (default 0.05)")
    parser.add_argument("--direct-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_child:
        print(json.dumps(asyncio.run(_direct(args))))
        return
    child = subprocess.run(
        [sys.executable, __file__, "--direct-child", "--callers", str(args.callers), "--seconds", str(args.seconds),
         "--sequential", str(args.sequential), "--latency", str(args.latency)],
        capture_output=True, text=True, env=_bench_env(), check=True,
    )
    direct = json.loads(child.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory(prefix="nons-bench-serve-") as workdir:
        served = _service(args, Path(workdir))
    report(args, direct, served)
    if direct["load"]["errors"] or served["load"]["errors"] or served["sequential"]["errors"] or served["exit_code"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
