"""A multiprocessing child (start method ``fork``) exports its telemetry when it ends.

Such a child ends by ``os._exit`` once its target returns: no exit handler of the interpreter runs, only
multiprocessing's own finalizers. NoN's providers must be flushed there, whether telemetry was set up in the
parent before the fork or by the child's own first pass. The batch schedule and the metric interval are long: only
the flush at the child's end sends what it recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OTLPReceiver

HERE = Path(__file__).parent

SCRIPT = """
import asyncio, json, multiprocessing, sys
from nons import ModelConfig, ModelProvider, NoN, Node

network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])

def work(answers):
    answers.put(asyncio.run(network.run("in the child")).trace_id)

if __name__ == "__main__":
    parent_trace = asyncio.run(network.run("in the parent")).trace_id if sys.argv[1] == "parent" else None
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=work, args=(answers,))
    child.start()
    child_trace = answers.get(timeout=60)
    child.join(60)
    print(json.dumps({"exitcode": child.exitcode, "child_trace": child_trace, "parent_trace": parent_trace}))
"""



def _exporting_to(receiver: OTLPReceiver) -> dict[str, str]:
    """This environment without its OTEL_* and NON_* variables, plus what sends a child's spans and metrics to
    ``receiver`` over OTLP/HTTP, with the batch and export intervals long: only an exit's flush sends them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    return {**clean, "PYTHONPATH": str(HERE.parents[1]), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "none", "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "OTEL_METRIC_EXPORT_INTERVAL": "600000"}  # fmt: skip


def _run_script(
    script: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> tuple[Any, subprocess.CompletedProcess[str]]:
    """Run ``script`` to its end (it must succeed); what it printed last, as JSON, and the finished process."""
    completed = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.splitlines()[-1]), completed


@pytest.mark.parametrize("set_up_in", ["parent", "child"])
def test_a_multiprocessing_fork_child_exports_its_spans_and_metrics_when_it_ends(
    set_up_in: str, tmp_path: Path
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(SCRIPT)
    with OTLPReceiver() as receiver:
        result, completed = _run_script(script, _exporting_to(receiver), set_up_in, timeout=120)
        assert result["exitcode"] == 0
        child_trace = bytes.fromhex(result["child_trace"])
        receiver.wait_for(lambda r: any(span.trace_id == child_trace for _, _, span in r.spans()), timeout=10)
        child_spans = {span.name.split(" ")[0] for _, _, span in receiver.spans() if span.trace_id == child_trace}
        passes_counted = [
            point.count
            for _, _, metric in receiver.metrics()
            if metric.name == "nons.network.duration"
            for point in metric.histogram.data_points
        ]
    assert {"invoke_workflow", "nons.layer", "nons.node", "chat"} <= child_spans
    # Only the child's export counts the child's pass: on top of the parent's, whose provider it inherited, or as
    # the only one, when the child set telemetry up itself (the parent then exports no metrics at all).
    assert max(passes_counted, default=0) == (2 if set_up_in == "parent" else 1), passes_counted
    assert "was not exported within" not in completed.stderr


POOL = """
import asyncio, json, multiprocessing
from nons import ModelConfig, ModelProvider, NoN, Node

network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])

def work(index):
    return asyncio.run(network.run(f"task {index}")).trace_id

if __name__ == "__main__":
    asyncio.run(network.run("in the parent"))
    with multiprocessing.get_context("fork").Pool(2) as pool:  # its exit terminates the workers (SIGTERM)
        print(json.dumps(pool.map(work, range(4))))
"""


def test_a_fork_pools_workers_export_their_spans_and_the_pool_ends(tmp_path: Path) -> None:
    """A pool's exit sends SIGTERM to workers that may be running their exit flush: NoN's SIGTERM handler flushes
    too, and the two must not wait on each other (they did, and the program never ended)."""
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    with OTLPReceiver() as receiver:
        for _ in range(3):  # the signal's moment varies: a few pools
            # The exit's flush may take its whole limit on a loaded machine (CI's two cores lost a worker's
            # spans at the default 1.5 s, once): a longer one, as a deadlock would outlast it anyway.
            env = {**_exporting_to(receiver), "NON_TELEMETRY_EXIT_TIMEOUT": "10"}
            printed, _ = _run_script(script, env)
            traces = {bytes.fromhex(t) for t in printed}
            receiver.wait_for(lambda r, traces=traces: traces <= {s.trace_id for _, _, s in r.spans()}, timeout=10)


STRAY_SIGTERM = """
import asyncio, json, multiprocessing, signal, threading, time
from nons import ModelConfig, ModelProvider, NoN, Node

network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])

def child(held, answers):
    answers.put(asyncio.run(network.run("in the child")).trace_id)
    idle = threading.Thread(target=time.sleep, args=(60,), daemon=True)
    idle.start()
    # The SIGTERM reaches the interpreter while the main thread waits on a lock the parent holds: the state a
    # signal just before the wait leaves (the interpreter caught it, the wait goes on).
    threading.Timer(0.3, signal.pthread_kill, args=(idle.ident, signal.SIGTERM)).start()
    held.acquire()

if __name__ == "__main__":
    asyncio.run(network.run("in the parent"))
    context = multiprocessing.get_context("fork")
    held, answers = context.Lock(), context.Queue()
    held.acquire()
    process = context.Process(target=child, args=(held, answers))
    process.start()
    trace = answers.get(timeout=60)
    process.join(20)
    print(json.dumps({"exitcode": process.exitcode, "trace": trace}))
    if process.exitcode is None:
        process.kill()
"""


def test_a_forked_child_waiting_on_a_lock_ends_on_a_sigterm_the_interpreter_caught_elsewhere(tmp_path: Path) -> None:
    """A SIGTERM that arrives just as a child's main thread starts to wait is caught by the interpreter and left
    for a Python handler that never runs while the wait lasts: NoN's handler is then started by its watcher, which
    flushes the child's spans, and the child ends by SIGTERM (a pool's exit waited for such a worker for ever)."""
    script = tmp_path / "stray.py"
    script.write_text(STRAY_SIGTERM)
    with OTLPReceiver() as receiver:
        outcome, completed = _run_script(script, _exporting_to(receiver))
        assert outcome["exitcode"] == -signal.SIGTERM, completed.stderr[-3000:]
        trace = bytes.fromhex(outcome["trace"])
        receiver.wait_for(lambda r: trace in {s.trace_id for _, _, s in r.spans()}, timeout=10)


GRANDCHILD = """
import asyncio, json, multiprocessing, time
from nons import ModelConfig, ModelProvider, NoN, Node

network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])

def grandchild():
    time.sleep(30)

def child(answers):
    grand = multiprocessing.get_context("fork").Process(target=grandchild)
    grand.start()
    time.sleep(0.3)
    grand.terminate()
    grand.join(10)
    time.sleep(1.5)  # a watcher woken by its child's SIGTERM would have ended this process by now
    answers.put(grand.exitcode)

if __name__ == "__main__":
    asyncio.run(network.run("in the parent"))
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    process = context.Process(target=child, args=(answers,))
    process.start()
    grand_exitcode = answers.get(timeout=20)
    process.join(10)
    print(json.dumps({"grandchild": grand_exitcode, "child": process.exitcode}))
"""


def test_a_grandchilds_sigterm_ends_the_grandchild_not_its_parent(tmp_path: Path) -> None:
    """A forked child's child takes a wakeup pipe of its own: with its parent's, its SIGTERM woke its parent's
    watcher, which then ended its parent."""
    script = tmp_path / "grandchild.py"
    script.write_text(GRANDCHILD)
    with OTLPReceiver() as receiver:
        outcome, _ = _run_script(script, _exporting_to(receiver))
    assert outcome == {"grandchild": -signal.SIGTERM, "child": 0}
