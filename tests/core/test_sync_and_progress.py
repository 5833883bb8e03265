"""Plain (non-async) code runs a pass with ``run_sync`` / ``forward_sync``; a pass reports its progress, node by
node and layer by layer, with the cost so far, to ``on_progress``."""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Any

import pytest

from nons import ProgressEvent
from nons.base.errors import NodeExecutionError
from nons.base.results import LLMCallRecord, Usage
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.progress import ProgressReporter
from nons.core.types import ConfigurationError, ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.operators.registry import operator

PRICED = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini")
FAILING = ModelConfig(provider=ModelProvider.MOCK, model_name="gpt-4o-mini", extra_params={"mock_failure_rate": 1.0})


def two_layers() -> NoN:
    return NoN.from_operators([[Node("generate", PRICED), Node("generate", PRICED)], Node("generate", PRICED)])


def test_run_sync_and_forward_sync_run_a_pass_without_an_event_loop() -> None:
    network = two_layers()
    result = network.run_sync("What is the capital of France?")
    assert result.output and result.cost_usd > 0 and result.trace_id
    assert isinstance(network.forward_sync("And of Italy?"), str)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 has no asyncio.Runner: asyncio.run() unsets it")
def test_run_sync_leaves_the_threads_current_event_loop_as_the_application_set_it() -> None:
    # The pass runs in a loop of its own; the application's loop stays the thread's current one, unused.
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        assert isinstance(two_layers().forward_sync("hello"), str)
        assert asyncio.get_event_loop_policy().get_event_loop() is loop
        assert not loop.is_closed()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_run_sync_inside_a_running_loop_is_refused_with_what_to_do_instead() -> None:
    with pytest.raises(RuntimeError, match=r"inside a running event loop.*await network.run"):
        two_layers().run_sync("hello")
    with pytest.raises(RuntimeError, match="forward_sync"):
        two_layers().forward_sync("hello")


async def test_progress_events_follow_the_pass_with_the_cost_so_far() -> None:
    events: list[ProgressEvent] = []
    result = await two_layers().run("hello", on_progress=events.append)
    kinds = [e.kind for e in events]
    for node_id in {e.node_id for e in events if e.node_id}:
        assert [e.kind for e in events if e.node_id == node_id] == ["node_started", "node_finished"]
    assert kinds.count("node_started") == kinds.count("node_finished") == 3
    assert [e.layer for e in events if e.kind == "layer_finished"] == [0, 1]
    assert kinds[-2:] == ["layer_finished", "pass_finished"]
    finished = [e for e in events if e.kind == "node_finished"]
    assert [e.nodes_done for e in finished] == [1, 2, 3]
    assert all(e.nodes_total == 3 and e.success for e in finished)
    assert {e.operator for e in finished} == {"generate"}
    # The cost so far only grows, and ends at the pass's cost.
    costs = [e.cost_usd for e in events]
    assert costs == sorted(costs) and costs[0] == 0
    assert math.isclose(events[-1].cost_usd, result.cost_usd, rel_tol=1e-12)
    assert events[-1].success is True and events[-1].network == result.network_name


async def test_progress_reports_failed_nodes_and_a_failed_pass() -> None:
    events: list[ProgressEvent] = []
    network = NoN(
        [
            Layer([Node("generate", PRICED), Node("generate", FAILING)],
                  LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE)),
            Layer([Node("generate", FAILING)]),
        ]
    )
    with pytest.raises(Exception):  # noqa: B017 (the pass's error is not what is checked here)
        await network.run("hello", on_progress=events.append)
    finished = {e.node_id: e.success for e in events if e.kind == "node_finished"}
    assert sorted(finished.values()) == [False, False, True]
    assert [(e.layer, e.success) for e in events if e.kind == "layer_finished"] == [(0, False)]
    assert (events[-1].kind, events[-1].layer, events[-1].success) == ("pass_finished", 1, False)


async def test_a_failing_progress_callback_never_fails_the_pass(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def broken(event: ProgressEvent) -> None:
        calls.append(event.kind)
        raise ValueError("a bug in the progress bar")

    result = await two_layers().run("hello", on_progress=broken)
    assert result.output
    assert calls == ["node_started"]  # not called again after it raised
    assert "on_progress callback raised" in caplog.text


def test_progress_works_from_run_sync_too() -> None:
    events: list[ProgressEvent] = []
    two_layers().run_sync("hello", on_progress=events.append)
    assert [e.kind for e in events].count("node_finished") == 3
    assert events[-1].kind == "pass_finished"


class _AppendedWhileRead(list):  # type: ignore[type-arg]
    """A pass's records that gain one more just after the reporter reads the new ones, as a pass run in a worker
    thread inside a node hands its records over from that thread."""

    def __init__(self, late: LLMCallRecord) -> None:
        super().__init__()
        self.late: LLMCallRecord | None = late

    def __getitem__(self, index: Any) -> Any:
        read = super().__getitem__(index)
        if self.late is not None and isinstance(index, slice):
            self.append(self.late)
            self.late = None
        return read


def test_a_record_handed_over_while_an_event_is_built_is_counted_by_the_next_event() -> None:
    def record(cost: float) -> LLMCallRecord:
        return LLMCallRecord(
            provider="mock", request_model="m", response_model="m", response_id=None,
            usage=Usage(input_tokens=1, output_tokens=1), finish_reason="stop", cost_usd=cost, attempts=1,
            duration_s=0.1,
        )  # fmt: skip

    calls = _AppendedWhileRead(late=record(0.25))
    calls.append(record(0.5))
    events: list[ProgressEvent] = []
    reporter = ProgressReporter(events.append, "n", total=2, calls=calls, started=0.0)
    reporter.node_finished(0, "a", "generate", True, now=1.0)  # reads 0.5; the 0.25 lands just after
    reporter.node_finished(0, "b", "generate", True, now=2.0)
    assert [e.cost_usd for e in events] == [0.5, 0.75], "before, the late record was marked counted, never added"


async def test_an_async_progress_callback_is_refused_at_once() -> None:
    # It was accepted, and never ran: each event made a coroutine no one awaited.
    async def show(event: ProgressEvent) -> None:
        pass

    class Shower:
        async def __call__(self, event: ProgressEvent) -> None:
            pass

    network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])
    for callback in (show, Shower()):
        with pytest.raises(ConfigurationError, match="on_progress must be a plain function"):
            await network.run("hi", on_progress=callback)  # type: ignore[arg-type]


async def test_a_progress_callback_that_is_not_a_function_is_refused() -> None:
    # Accepted before: every event of the pass then logged a TypeError traceback ("the on_progress callback raised").
    network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))])
    with pytest.raises(ConfigurationError, match="on_progress must be a function, got int: 5"):
        await network.run("hi", on_progress=5)  # type: ignore[arg-type]


async def test_a_callback_that_interrupts_the_pass_at_its_end_leaves_nothing_open() -> None:
    # A Ctrl-C in a progress bar's last update left the pass's span open and nons.network.active at 1.
    from nons.observability.integration import get_observability

    def interrupt(event: ProgressEvent) -> None:
        if event.kind == "pass_finished":
            raise KeyboardInterrupt

    network = NoN.from_operators([Node("generate", ModelConfig(provider=ModelProvider.MOCK))], name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        await network.run("hi", on_progress=interrupt)
    spans = get_observability().export_all_data()["spans"]
    assert any(s["operation_name"] == "invoke_workflow interrupted" for s in spans)  # ended, so exported


async def test_an_operator_raising_a_base_exception_ends_its_node_and_stops_its_siblings_at_once() -> None:
    # Its span stayed open, no node_finished was reported, and FAIL_FAST waited for the sibling (1 s).
    class Abort(BaseException):
        pass

    @operator(name="progress_abort", description="Abort.", uses_llm=False, replace=True)
    async def abort(ctx: Any, input: str) -> str:
        raise Abort("stop")

    @operator(name="progress_sleep", description="Sleep.", uses_llm=False, replace=True)
    async def sleep(ctx: Any, input: str) -> str:
        await asyncio.sleep(5)
        return input

    events: list[ProgressEvent] = []
    layer = [Node("progress_abort"), Node("progress_sleep")]
    network = NoN.from_operators([layer], layer_config=LayerConfig(error_policy=ErrorPolicy.FAIL_FAST), name="abort")
    started = asyncio.get_running_loop().time()
    with pytest.raises(NodeExecutionError, match="Abort: stop"):  # FAIL_FAST's error, caused by it
        await network.run("hi", on_progress=events.append)
    assert asyncio.get_running_loop().time() - started < 2
    assert ("node_finished", False) in [(e.kind, e.success) for e in events if e.operator == "progress_abort"]
