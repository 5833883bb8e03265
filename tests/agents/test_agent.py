"""The agent loop on the simulated provider: steps, endings, state per run, early close, telemetry, config."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any

import pytest
from agent_helpers import named, one, scripted, tool_call_count, trace_spans
from agent_tools import calculator

import nons.core.scheduler as scheduler_module
from nons.base.errors import ConfigurationError, InputValidationError
from nons.core.agents import MAX_STEPS_REACHED, Agent, AgentState, ToolRegistry
from nons.core.network import NoN, create_network
from nons.core.node import Node
from nons.core.scheduler import RateLimitConfig, configure_scheduler, health_check, start_scheduler
from nons.core.types import ModelConfig, ModelProvider
from nons.observability import names
from nons.observability.buffer import Observability


async def test_steps_of_a_run_and_its_conversation(obs: Observability) -> None:
    model = scripted([
        [("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})],
        [("divide", {"a": 1, "b": 0})],
        [("final_answer", {"answer": "10"})],
    ])
    agent = Agent(model, calculator(), name="steps-agent")
    steps = [step async for step in agent.run("sum things")]

    assert [s["step"] for s in steps] == [1, 2, 3]
    assert [s["is_final"] for s in steps] == [False, False, True]
    assert [s["success"] for s in steps] == [True, False, True]
    assert [c["output"] for c in steps[0]["tool_calls"]] == [3.0, 7.0]
    assert steps[1]["error_type"] == "ZeroDivisionError"
    assert steps[1]["error"] == "tool 'divide' raised ZeroDivisionError: float division by zero"
    assert steps[2]["output"] == "10"
    assert steps[2]["llm_calls"] == 3
    assert steps[2]["input_tokens"] > 0 and steps[2]["cost_usd"] > 0  # gpt-4o-mini has a known price
    assert len({s["run_id"] for s in steps}) == 1

    spans = trace_spans(obs, steps[-1]["trace_id"])
    agent_span = one(spans, "invoke_agent steps-agent")
    assert agent_span["kind"] == "INTERNAL" and agent_span["success"]
    attributes = agent_span["attributes"]
    assert attributes[names.GEN_AI_OPERATION_NAME] == names.OP_INVOKE_AGENT
    assert attributes[names.GEN_AI_AGENT_NAME] == "steps-agent"
    assert attributes[names.GEN_AI_AGENT_ID] == agent.id
    assert attributes[names.GEN_AI_CONVERSATION_ID] == steps[0]["run_id"]
    assert attributes[names.AGENT_STEPS] == 3
    assert attributes[names.ROLLUP_LLM_CALLS] == 3
    assert attributes[names.ROLLUP_COST] == pytest.approx(steps[-1]["cost_usd"])
    assert attributes[names.ROLLUP_INPUT_TOKENS] == steps[-1]["input_tokens"]
    chats = named(spans, "chat ")
    tools = named(spans, "execute_tool ")
    assert len(chats) == 3
    assert [t["operation_name"] for t in tools] == [
        "execute_tool add", "execute_tool add", "execute_tool divide", "execute_tool final_answer",
    ]
    assert all(s["parent_span_id"] == agent_span["span_id"] for s in chats + tools)
    assert [t["attributes"][names.GEN_AI_TOOL_CALL_ID] for t in tools[:2]] == ["call_0_0", "call_0_1"]
    divide = tools[2]
    assert not divide["success"] and divide["error_type"] == "ZeroDivisionError"
    # Roll-ups use nons.* names: the agent span carries no gen_ai.usage.cost to double count.
    assert names.GEN_AI_USAGE_COST not in attributes


async def test_a_text_answer_ends_the_run() -> None:
    agent = Agent(scripted(["Four."]), calculator())
    steps = [step async for step in agent.run("2 + 2?")]
    assert len(steps) == 1
    assert steps[0]["is_final"] and steps[0]["success"]
    assert steps[0]["output"] == steps[0]["text"] == "Four."
    assert steps[0]["tool_calls"] == []


async def test_an_unpriced_models_calls_are_counted_apart_never_as_a_zero_cost() -> None:
    unpriced = ModelConfig(provider=ModelProvider.MOCK, model_name="my-local-llm", extra_params={"mock_tool_calls": [
        [{"name": "add", "arguments": {"a": 1, "b": 2}}], "3"
    ]})  # fmt: skip
    final = await Agent(unpriced, calculator()).run_to_completion("add 1 and 2")
    assert (final["llm_calls"], final["unpriced_calls"], final["cost_usd"]) == (2, 2, 0.0)
    assert final["usage_unreported_calls"] == 0  # unpriced, but its usage is known
    priced = await Agent(scripted([[("add", {"a": 1, "b": 2})], "3"]), calculator()).run_to_completion("add")
    assert priced["unpriced_calls"] == 0 and priced["cost_usd"] > 0


async def test_max_steps_reached_is_a_clear_failed_final_result(obs: Observability) -> None:
    agent = Agent(scripted([[("add", {"a": 1, "b": 1})]]), calculator(), name="looping", max_steps=3)
    steps = [step async for step in agent.run("loop")]
    assert [s["is_final"] for s in steps] == [False, False, False, True]
    final = steps[-1]
    assert final["success"] is False
    assert final["error_type"] == MAX_STEPS_REACHED
    assert str(final["error"]).startswith("max_steps (3) reached")
    assert final["llm_calls"] == 3
    agent_span = one(trace_spans(obs, final["trace_id"]), "invoke_agent looping")
    assert not agent_span["success"] and agent_span["error_type"] == MAX_STEPS_REACHED


async def test_a_failed_llm_call_is_retried_then_ends_the_run(obs: Observability) -> None:
    failing = scripted(["never"], mock_failure_rate=1.0, mock_failure_kind="server_error")
    agent = Agent(failing, calculator(), name="failing", max_llm_retry=1)
    final = await agent.run("anything")
    assert (final["is_final"], final["success"], final["error_type"]) == (True, False, "server_error")
    assert "simulated server_error" in str(final["error"])
    spans = trace_spans(obs, final["trace_id"])
    chat = one(spans, "chat gpt-4o-mini")
    assert chat["attributes"][names.ATTEMPTS] == 2  # max_llm_retry=1: one retry
    agent_span = one(spans, "invoke_agent failing")
    assert not agent_span["success"] and agent_span["error_type"] == "server_error"


async def test_tool_calls_are_counted_by_tool_and_outcome(obs: Observability) -> None:
    model = scripted([[("add", {"a": 1, "b": 2}), ("made_up", {}), ("add", {"a": "x"})], "done"])
    await Agent(model, calculator(), name="counted").run("count")
    base = {names.GEN_AI_AGENT_NAME: "counted"}
    assert tool_call_count(obs, {**base, names.GEN_AI_TOOL_NAME: "add", names.OUTCOME: names.OUTCOME_SUCCESS}) == 1
    assert tool_call_count(
        obs, {**base, names.GEN_AI_TOOL_NAME: "add", names.OUTCOME: names.OUTCOME_FAILURE,
              names.ERROR_TYPE: "invalid_arguments"}
    ) == 1
    # A name the model made up is not a label value: models can invent any number of them.
    assert tool_call_count(obs, {**base, names.GEN_AI_TOOL_NAME: "made_up"}) == 0
    assert tool_call_count(
        obs, {**base, names.GEN_AI_TOOL_NAME: names.TOOL_NAME_UNREGISTERED, names.ERROR_TYPE: "unknown_tool"}
    ) == 1


async def test_concurrent_runs_keep_their_own_state_and_conversation(obs: Observability) -> None:
    registry = ToolRegistry()

    @registry.tool(description="Remember an item.")
    async def remember(item: str, state: AgentState) -> list[str]:
        for _ in range(3):  # yield to the other runs between reading and writing the state
            await asyncio.sleep(0)
        state["items"].append(item)
        return list(state["items"])

    initial = {"items": ["seed"]}
    # No script: the simulated model calls the tool the task names, with the task as the argument, and then
    # answers with the tool's result.
    agent = Agent(ModelConfig(provider=ModelProvider.MOCK), registry, name="memory", state=initial)
    tasks = [f"remember item {i}" for i in range(5)]
    finals = await asyncio.gather(*(agent.run_to_completion(t) for t in tasks))

    for task, final in zip(tasks, finals, strict=True):
        assert final["success"] and final["is_final"]
        assert final["state"] == {"items": ["seed", task]}
        assert task in final["output"] and all(other not in final["output"] for other in tasks if other != task)
    assert initial == {"items": ["seed"]}  # each run got a deep copy
    assert len({f["trace_id"] for f in finals}) == 5
    for final in finals:
        spans = trace_spans(obs, final["trace_id"])
        assert len(named(spans, "invoke_agent memory")) == 1
        assert len(named(spans, "execute_tool remember")) == 1


async def test_aclose_ends_the_span_and_makes_no_further_call(obs: Observability) -> None:
    agent = Agent(scripted([[("add", {"a": 1, "b": 1})]]), calculator(), name="closed-early", max_steps=5)
    run = agent.run("loop")
    first = await run.__anext__()
    await run.aclose()
    spans = trace_spans(obs, first["trace_id"])
    agent_span = one(spans, "invoke_agent closed-early")
    assert agent_span["success"]  # the consumer chose to stop: not a failure
    assert agent_span["attributes"][names.AGENT_STEPS] == 1
    assert len(named(spans, "chat ")) == 1
    with pytest.raises(StopAsyncIteration):
        await run.__anext__()


async def test_break_ends_the_span_once_the_run_is_collected(obs: Observability) -> None:
    agent = Agent(scripted([[("add", {"a": 1, "b": 1})]]), calculator(), name="broken-off", max_steps=5)
    trace_id = None
    async for step in agent.run("loop"):
        trace_id = step["trace_id"]
        break
    # The abandoned generator is closed by the event loop's async-generator finalizer, a few loop turns later.
    for _ in range(20):
        gc.collect()
        if named(trace_spans(obs, trace_id), "invoke_agent broken-off"):
            break
        await asyncio.sleep(0)
    spans = trace_spans(obs, trace_id)
    assert len(named(spans, "invoke_agent broken-off")) == 1
    assert len(named(spans, "chat ")) == 1


def test_a_break_just_before_the_event_loop_ends_is_no_failure_of_the_run(obs: Observability) -> None:
    # asyncio.run cancels the task that closes the abandoned run: its CancelledError arrives at the yield, as
    # the consumer's GeneratorExit would. Before, the run was recorded as failed with error type "cancelled".
    agent = Agent(scripted([[("add", {"a": 1, "b": 1})]]), calculator(), name="broken-at-exit", max_steps=5)

    async def first_step_only() -> str:
        async for step in agent.run("loop"):
            return step["trace_id"]
        raise AssertionError("the run gave no step")

    trace_id = asyncio.run(first_step_only())
    (agent_span,) = named(trace_spans(obs, trace_id), "invoke_agent broken-at-exit")
    assert agent_span["success"] and agent_span["error_type"] is None


def test_a_run_is_a_coroutine_for_asyncio_run_tasks_and_task_groups(obs: Observability) -> None:
    # Each of these refused the run before ("a coroutine was expected"): it was awaitable, not a coroutine.
    agent = Agent(scripted([[("add", {"a": 1, "b": 2})], [("final_answer", {"answer": "3"})]]), calculator())
    assert asyncio.iscoroutine(agent.run("x"))

    final = asyncio.run(agent.run("add"))  # type: ignore[arg-type]  # typeshed wants a native coroutine
    assert final["is_final"] and final["output"] == "3" and final["step"] == 2

    async def in_tasks() -> list[str]:
        task = asyncio.create_task(agent.run("add"))
        async with asyncio.TaskGroup() as group:
            grouped = group.create_task(agent.run("add"))
        return [(await task)["output"], grouped.result()["output"]]

    assert asyncio.run(in_tasks()) == ["3", "3"]


async def test_a_cancelled_task_running_an_agent_ends_its_span_cancelled(obs: Observability) -> None:
    model = ModelConfig(provider=ModelProvider.MOCK, extra_params={"mock_latency_s": 30})
    agent = Agent(model, calculator(), name="cancelled-task")
    task = asyncio.create_task(agent.run("add 1 and 2"))
    for _ in range(500):  # until the run is in its first LLM call (its span started), however loaded the machine
        await asyncio.sleep(0.01)
        if (await health_check())["in_flight"]:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (agent_span,) = [
        s for s in obs.export_all_data()["spans"] if s["operation_name"] == "invoke_agent cancelled-task"
    ]
    assert not agent_span["success"] and agent_span["error_type"] == "cancelled"


async def test_an_agent_run_and_tool_call_cut_by_a_network_timeout_say_timeout(obs: Observability) -> None:
    # They said "cancelled" while the node, layer and LLM call the same timeout cut said "timeout" (their duration
    # metrics take the same error.type).
    from nons.core.types import NetworkConfig
    from nons.operators.registry import operator

    tools = ToolRegistry()

    @tools.tool(description="waits")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    agent = Agent(scripted([[("slow", {"seconds": 30})], "end"]), tools, name="cut-by-timeout")

    @operator(name="runs_cut_agent")
    async def runs_cut_agent(ctx: Any, input: str) -> str:
        return str((await agent.run(input))["output"])

    network = create_network(
        layers=[Node("runs_cut_agent")], config=NetworkConfig(name="cut-agent", timeout_seconds=0.5)
    )
    with pytest.raises(TimeoutError):
        await network.run("go")
    spans = obs.export_all_data()["spans"]
    for name in ("invoke_agent cut-by-timeout", "execute_tool slow"):
        assert one(spans, name)["error_type"] == "timeout", name


def test_a_run_is_run_to_its_end_once(obs: Observability) -> None:
    agent = Agent(scripted([[("final_answer", {"answer": "1"})]]), calculator())

    async def twice() -> None:
        run = agent.run("x")
        assert (await run)["output"] == "1"
        with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
            await run

    asyncio.run(twice())


async def test_an_exception_raised_inside_the_run_fails_its_span(obs: Observability) -> None:
    bad = ModelConfig(provider=ModelProvider.MOCK, extra_params={"mock_no_such_option": 1})
    agent = Agent(bad, calculator(), name="misconfigured")
    run = agent.run("x")
    with pytest.raises(ConfigurationError, match="unknown simulated-provider parameter"):
        await run
    spans = [s for s in obs.export_all_data()["spans"] if s["operation_name"] == "invoke_agent misconfigured"]
    assert spans and not spans[-1]["success"] and spans[-1]["error_type"] == "configuration_error"


async def test_the_mock_calls_the_named_tool_by_rule() -> None:
    agent = Agent(ModelConfig(provider=ModelProvider.MOCK), calculator(), name="by-rule")
    steps = [step async for step in agent.run("Please add 2 and 3.5")]
    assert len(steps) == 2
    (call,) = steps[0]["tool_calls"]
    assert (call["tool_name"], call["arguments"], call["output"]) == ("add", {"a": 2.0, "b": 3.5}, 5.5)
    assert steps[1]["is_final"] and "add returned 5.5" in steps[1]["output"]


async def test_tool_arguments_and_results_are_recorded_only_when_content_capture_is_on(
    obs: Observability, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = scripted([[("add", {"a": 1, "b": 2})], "3"])
    quiet = await Agent(model, calculator(), name="quiet").run("add")
    tool = one(trace_spans(obs, quiet["trace_id"]), "execute_tool add")
    assert names.GEN_AI_TOOL_CALL_ARGUMENTS not in tool["attributes"]
    assert names.GEN_AI_TOOL_CALL_RESULT not in tool["attributes"]

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    loud = await Agent(model, calculator(), name="loud").run("add")
    tool = one(trace_spans(obs, loud["trace_id"]), "execute_tool add")
    assert tool["attributes"][names.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"a": 1, "b": 2}'
    assert tool["attributes"][names.GEN_AI_TOOL_CALL_RESULT] == "3.0"
    assert tool["attributes"][names.GEN_AI_TOOL_DESCRIPTION] == "Add two numbers."


# -- what an Agent accepts ------------------------------------------------------------------------------------


async def test_a_node_or_one_node_network_gives_its_model_and_context(
    obs: Observability, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    node = Node("generate", scripted(["ok"]), additional_prompt_context="Answer in French.")
    for model in (node, NoN.from_operators([node])):
        agent = Agent(model, calculator(), name="from-node", system_prompt="You add numbers.")
        final = await agent.run("hi")
        chat = one(trace_spans(obs, final["trace_id"]), "chat gpt-4o-mini")
        # One part: the agent's system prompt and the node's context travel as one system text.
        assert json.loads(chat["attributes"][names.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
            {"type": "text", "content": "You add numbers.\n\nAnswer in French."}
        ]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (create_network(["generate", "generate"]), "exactly one node"),
        (create_network([["generate", "generate"]]), "exactly one node"),
        ("gpt-4o-mini", "ModelConfig, a Node or a one-node NoN"),
    ],
)
def test_other_models_are_refused(model: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Agent(model, ToolRegistry())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_steps": 0}, "max_steps"),
        ({"max_llm_retry": -1}, "max_llm_retry"),
        ({"name": " "}, "name"),
        ({"state": [1]}, "state must be a mapping"),
        ({"tool_choice": "required"}, "needs at least one tool"),  # the registry is empty
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Agent(ModelConfig(), ToolRegistry(), **options)  # type: ignore[arg-type]


def test_registry_must_be_a_tool_registry() -> None:
    with pytest.raises(ConfigurationError, match="ToolRegistry"):
        Agent(ModelConfig(), [])  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["", "   ", None])
def test_empty_tasks_are_refused(task: object) -> None:
    with pytest.raises(InputValidationError):
        Agent(ModelConfig(), ToolRegistry()).run(task)  # type: ignore[arg-type]


# -- the deployment guide's code, as written ------------------------------------------------------------------


async def safe_agent_run(agent, task):  # type: ignore[no-untyped-def]
    """Run agent with proper error handling"""
    try:
        async for result in agent.run(task):
            if result.get("success", False):
                return result
            else:
                logging.warning(f"Agent step failed: {result.get('error')}")

        return {"success": False, "error": "Max steps reached"}

    except Exception as e:
        logging.error(f"Agent execution failed: {e}", exc_info=True)
        return {"success": False, "error": str(e)}


async def test_guide_safe_agent_run(obs: Observability, caplog: pytest.LogCaptureFixture) -> None:
    model = scripted([[("divide", {"a": 1, "b": 0})], [("divide", {"a": 1, "b": 4})], "0.25"])
    result = await safe_agent_run(Agent(model, calculator(), name="guide-safe"), "1/4?")
    # The first step failed (logged), the second succeeded and was returned.
    assert "Agent step failed: tool 'divide' raised ZeroDivisionError" in caplog.text
    assert result["success"] and result["step"] == 2 and result["tool_calls"][0]["output"] == 0.25
    for _ in range(20):  # the abandoned run is closed by the loop's finalizer
        gc.collect()
        if named(trace_spans(obs, result["trace_id"]), "invoke_agent guide-safe"):
            break
        await asyncio.sleep(0)
    assert len(named(trace_spans(obs, result["trace_id"]), "invoke_agent guide-safe")) == 1

    failed = await safe_agent_run(Agent(scripted([[("add", {"a": 1})]]), calculator(), max_steps=2), "x")
    assert failed == {"success": False, "error": "Max steps reached"}


async def test_guide_scheduler_initialization_and_request_batching() -> None:
    agent = Agent(ModelConfig(provider=ModelProvider.MOCK), calculator(), name="guide-batch")

    # "Scheduler Initialization", as written.
    await start_scheduler()
    task = "add 1 and 2"
    result = await agent.run(task)
    assert result["is_final"] and result["success"] and "3.0" in result["output"]

    # "Request Batching", as written.
    async def process_batch(requests):  # type: ignore[no-untyped-def]
        tasks = [agent.run(req) for req in requests]
        results = await asyncio.gather(*tasks)
        return results

    results = await process_batch([f"add {i} and 1" for i in range(4)])
    assert [r["tool_calls"] for r in results] == [[] for _ in range(4)]  # final steps hold the answer
    assert [f"{i + 1}.0" in r["output"] for i, r in enumerate(results)] == [True] * 4


def test_a_run_stepped_from_two_event_loops_is_admitted_under_each_loops_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sync wrapper may step a run in a loop of its own each time: step 2's call must wait for loop B's only
    # slot, not be admitted against the loop step 1 ran in.
    monkeypatch.setattr(scheduler_module, "_scheduler", None)  # restored after the test
    scheduler = configure_scheduler({ModelProvider.MOCK: RateLimitConfig(max_concurrent=1)})
    run = Agent(scripted([[("add", {"a": 1, "b": 2})], "3"]), calculator()).run("add 1 and 2")
    loop_a, loop_b = asyncio.new_event_loop(), asyncio.new_event_loop()

    async def step_while_the_slot_is_held() -> bool:
        held = scheduler.try_acquire(ModelProvider.MOCK, "gpt-4o-mini")
        assert held is not None
        try:
            await asyncio.wait_for(run.__anext__(), 0.3)
        except asyncio.TimeoutError:
            return True  # it waited for the slot
        finally:
            held.release()
        return False

    try:
        assert loop_a.run_until_complete(run.__anext__())["is_final"] is False
        assert loop_b.run_until_complete(step_while_the_slot_is_held())
        assert scheduler.get_stats()["in_flight"] == 0
    finally:
        loop_b.run_until_complete(run.aclose())
        loop_a.close()
        loop_b.close()


async def test_a_captured_tool_result_is_what_the_model_read_and_bounded_in_size(
    obs: Observability, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The value itself was recorded: NaN as the invalid JSON NaN, a set as its str(); and a tool's 100,000 rows as
    # a 3.5 MB attribute (and again in the next chat span), which the Collector refused, losing the whole trace.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    registry = ToolRegistry()

    @registry.tool(description="Odd values.")
    def odd() -> dict[str, Any]:
        return {"x": float("nan"), "s": {1}, "b": b"\x00\x01"}

    @registry.tool(description="Many rows.")
    def rows() -> list[dict[str, Any]]:
        return [{"id": i, "name": f"row {i}"} for i in range(100_000)]

    model = scripted([[("odd", {})], [("rows", {})], "done"])
    final = await Agent(model, registry, name="big").run("go")
    spans = trace_spans(obs, final["trace_id"])
    recorded = json.loads(one(spans, "execute_tool odd")["attributes"][names.GEN_AI_TOOL_CALL_RESULT])
    assert recorded == {"x": None, "s": [1], "b": "AAE="}
    big = one(spans, "execute_tool rows")["attributes"][names.GEN_AI_TOOL_CALL_RESULT]
    assert len(big) < 64_000 and json.loads(big)[-1].endswith("more items")
    for chat in named(spans, "chat gpt-4o-mini"):
        assert len(chat["attributes"].get(names.GEN_AI_INPUT_MESSAGES, "")) < 100_000


def test_a_state_that_cannot_be_copied_is_refused_when_the_agent_is_made() -> None:
    # Each run starts from a deep copy of it: a lock failed every run's start with "cannot pickle
    # '_thread.lock' object", which said nothing of the state.
    import threading

    with pytest.raises(ConfigurationError, match=r"state must be deep-copyable: .* cannot pickle '_thread.lock'"):
        Agent(scripted(["ok"]), calculator(), state={"lock": threading.Lock()})


async def test_a_tool_raising_an_error_whose_error_type_is_not_text_is_a_failed_result(obs: Observability) -> None:
    # Every redis-py exception has an `error_type` that is an enum: taken as the error's type, it failed the
    # tool span's cleaning with a TypeError ("object of type 'ExceptionType' has no len()") and crashed the run.
    redis_exceptions = pytest.importorskip("redis.exceptions")
    registry = ToolRegistry()

    @registry.tool
    def session(user: str) -> str:
        """Read the user's session."""
        raise redis_exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    model = scripted([[("session", {"user": "ada"})], "Sorry, the store is down."])
    steps = [step async for step in Agent(model, registry, name="sessions").run("who am I?")]
    (call,) = steps[0]["tool_calls"]
    assert (call["success"], call["error_type"]) == (False, "ConnectionError") == (False, steps[0]["error_type"])
    assert steps[-1]["is_final"] and steps[-1]["output"] == "Sorry, the store is down."
    json.dumps([{k: v for k, v in step.items() if k != "state"} for step in steps])  # as AgentStep says
    tool = one(trace_spans(obs, steps[-1]["trace_id"]), "execute_tool session")
    assert not tool["success"] and tool["error_type"] == "ConnectionError"
