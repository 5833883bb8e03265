"""What a run of an agent gives back: its steps (:class:`AgentStep`) and the run itself (:class:`AgentRun`),
which is both an async iterator of steps and a coroutine of the final one."""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Generator, Mapping
from typing import Any, TypedDict

from nons.base.errors import ConfigurationError, message_of
from nons.core.agents.tools import AgentState, ToolResult

__all__ = ["AgentRun", "AgentStep", "initial_state"]


def initial_state(state: object) -> dict[str, Any]:
    """An agent's ``state`` argument as the dict each of its runs starts from a deep copy of (``None``: empty);
    :class:`~nons.base.errors.ConfigurationError` for anything that is no mapping, or cannot be copied."""
    if state is not None and not isinstance(state, Mapping):
        raise ConfigurationError(f"state must be a mapping, got {type(state).__name__}")
    kept = dict(state or {})
    try:
        copy.deepcopy(kept)
    except Exception as error:
        # Refused when the agent is made, naming the state: each run's start failed with the copy's own error (a
        # lock: "cannot pickle '_thread.lock' object"), which never said why anything was copied.
        raise ConfigurationError(
            "state must be deep-copyable: each run starts from its own copy; copying it raised "
            f"{type(error).__name__}: {message_of(error)} (keep a client, a lock or a pool out of the state, e.g. "
            "in the tool's closure)"
        ) from None
    return kept


class AgentStep(TypedDict):
    """One step of a run, as a plain dict (``step.get("success")`` works, and it serialises to JSON except
    for the tools' outputs, ``output`` and ``tool_calls[i]["output"]``, which are what the tools returned: a
    set, a datetime or bytes as they are; :func:`nons.core.agents.tool_output.output_text` gives the text the model
    read of one).

    Keys:
        step: the step number, from 1.
        success: whether the step went well (every tool call succeeded); on the final result, whether the
            run reached an answer.
        error: what went wrong (``None`` on success). For a step whose tools failed, the tools' errors.
        error_type: low-cardinality kind of the error (``unknown_tool``, ``invalid_arguments``, an exception
            class name, ``max_steps``, a provider error type) or ``None``.
        text: the model's text in this step (may be empty when it only called tools).
        tool_calls: the :class:`~nons.core.agents.tools.ToolResult` of each tool call of this step.
        is_final: whether this is the run's last result.
        output: the run's answer on a successful final result (the stop tool's output or the text), else
            ``None``.
        state: the run's :class:`~nons.core.agents.tools.AgentState` (the same dict throughout the run).
        run_id: the id of this run (``gen_ai.conversation.id`` on its span).
        trace_id: the trace of the run's ``invoke_agent`` span (``None`` when tracing is off).
        llm_calls, input_tokens, output_tokens, cost_usd: totals of the run so far; ``cost_usd`` counts calls
            whose price is known.
        unpriced_calls: the run's calls so far whose price is unknown (their cost is in no total, never as 0).
        usage_unreported_calls: the run's calls so far whose server reported no usage (their tokens are in no
            total).
    """

    step: int
    success: bool
    error: str | None
    error_type: str | None
    text: str
    tool_calls: list[ToolResult]
    is_final: bool
    output: Any
    state: AgentState
    run_id: str
    trace_id: str | None
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int
    usage_unreported_calls: int


class AgentRun(AsyncIterator[AgentStep], Coroutine[Any, Any, AgentStep]):
    """One run of an agent, returned by :meth:`Agent.run`.

    - ``async for step in agent.run(task)`` yields each step's :class:`AgentStep`, the last with
      ``is_final=True``. Stopping early (``break``, or ``await run.aclose()``) ends the run: no further LLM
      call is made, and its span ends (at once with ``aclose()``, when the run is garbage-collected after a
      ``break``).
    - ``await agent.run(task)`` runs to the end and returns the final step. The run is a coroutine of that
      step as well, so whatever takes a coroutine takes it: ``asyncio.run(agent.run(task))``,
      ``asyncio.create_task(agent.run(task))``, a ``TaskGroup``'s ``create_task``, and
      ``await asyncio.gather(*(agent.run(t) for t in tasks))`` to run several at once.

    A run is iterated or run to its end once, as a coroutine is awaited once.
    """

    def __init__(self, steps: AsyncGenerator[AgentStep, None]) -> None:
        self._steps = steps
        self._last: AgentStep | None = None
        self._completion: Coroutine[Any, Any, AgentStep] | None = None

    def __aiter__(self) -> AgentRun:
        return self

    async def __anext__(self) -> AgentStep:
        step = await self._steps.__anext__()
        self._last = step
        return step

    async def aclose(self) -> None:
        """Stop the run now: its span ends and no further step runs."""
        await self._steps.aclose()

    # The coroutine protocol, delegated to one coroutine that runs the steps to the end: asyncio.run(),
    # create_task() and a TaskGroup accept only coroutines (an awaitable that is not one is refused with
    # "a coroutine was expected"), and drive it with send() and throw().

    def _to_end(self) -> Coroutine[Any, Any, AgentStep]:
        if self._completion is None:
            self._completion = self._to_completion()
        return self._completion

    def __await__(self) -> Generator[Any, None, AgentStep]:
        return self._to_end().__await__()

    def send(self, value: Any) -> Any:
        return self._to_end().send(value)

    def throw(self, *args: Any) -> Any:
        # The arguments passed on as given: the three-argument form warns from Python 3.12.
        return self._to_end().throw(*args)

    def close(self) -> None:
        """Close the coroutine that runs the steps to the end (a run never started has nothing to close)."""
        if self._completion is not None:
            self._completion.close()

    async def _to_completion(self) -> AgentStep:
        try:
            async for _ in self:
                pass
        finally:
            await self.aclose()
        if self._last is None or not self._last["is_final"]:
            raise RuntimeError("this agent run was closed before it finished")
        return self._last
