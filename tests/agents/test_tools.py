"""ToolRegistry: schemas from signatures and models, validation, sync/async/threaded tools, failures as results."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Optional

import pytest
from pydantic import BaseModel, Field, field_validator

from nons.base.errors import ConfigurationError
from nons.base.redaction import REDACTED, register_secret
from nons.core.agents import INVALID_ARGUMENTS, UNKNOWN_TOOL, AgentState, ToolRegistry


def test_schema_is_built_from_the_signature() -> None:
    registry = ToolRegistry()

    @registry.tool
    def search(query: Annotated[str, Field(description="what to look for")], limit: int = 5) -> list[str]:
        """Search the notes.

        Longer explanation that is not part of the description.
        """
        return [query] * limit

    (definition,) = registry.definitions()
    assert definition.name == "search"
    assert definition.description == "Search the notes."
    schema = definition.parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"]["description"] == "what to look for"
    assert schema["properties"]["limit"] == {"default": 5, "title": "Limit", "type": "integer"}
    assert schema["additionalProperties"] is False
    assert "title" not in schema
    # The decorator hands the function back unchanged.
    assert search("x", 2) == ["x", "x"]


def test_a_hint_that_cannot_be_resolved_costs_only_its_own_type() -> None:
    # This module's annotations are strings (from __future__ import annotations): Local, a class of this
    # function, cannot be resolved from the module, and must not take the other parameters' types with it.
    class Local(BaseModel):
        x: int

    registry = ToolRegistry()

    @registry.tool
    def add(a: int, b: int, state: AgentState, extra: Local | None = None) -> int:
        """Add."""
        return a + b

    (definition,) = registry.definitions()
    properties = definition.parameters["properties"]
    assert (properties["a"]["type"], properties["b"]["type"]) == ("integer", "integer")
    assert "state" not in properties and definition.parameters["required"] == ["a", "b"]
    assert "type" not in properties["extra"]  # taken as Any


def test_name_description_and_param_model_options() -> None:
    registry = ToolRegistry()

    class Point(BaseModel):
        x: float
        y: float = 0.0

    @registry.tool(name="norm", description="Length of a vector.", param_model=Point)
    def length(x: float, y: float) -> float:
        return float((x * x + y * y) ** 0.5)

    assert registry.names == ["norm"]
    assert "norm" in registry and "length" not in registry
    definition = registry["norm"].definition
    assert definition.description == "Length of a vector."
    assert definition.parameters["properties"].keys() == {"x", "y"}
    assert definition.parameters["required"] == ["x"]


async def test_param_model_fields_arrive_as_keyword_arguments() -> None:
    registry = ToolRegistry()

    class Move(BaseModel):
        steps: int
        direction: str = "north"

    @registry.tool(param_model=Move)
    def walk(steps: int, direction: str) -> str:
        return f"{steps} {direction}"

    result = await registry.execute("walk", {"steps": "3"}, call_id="c1")
    assert result == {
        "success": True, "tool_name": "walk", "output": "3 north", "error": None, "error_type": None,
        "is_stop": False, "call_id": "c1", "arguments": {"steps": "3"},
    }


def test_a_param_model_the_function_cannot_take_is_refused() -> None:
    registry = ToolRegistry()

    class Args(BaseModel):
        a: int

    with pytest.raises(ConfigurationError, match="cannot take its param_model's fields"):
        registry.register(lambda b: b, name="f", param_model=Args)
    with pytest.raises(ConfigurationError, match="BaseModel subclass"):
        registry.register(lambda a: a, name="g", param_model=dict)  # type: ignore[arg-type]


async def test_invalid_arguments_are_a_failed_result_that_names_the_problem() -> None:
    registry = ToolRegistry()

    @registry.tool
    def add(a: float, b: float) -> float:
        return a + b

    result = await registry.execute("add", {"a": "three"})
    assert result["success"] is False
    assert result["error_type"] == INVALID_ARGUMENTS
    assert result["output"] is None
    assert "a: Input should be a valid number" in str(result["error"])
    assert "b: Field required" in str(result["error"])
    assert "https://" not in str(result["error"])  # no documentation links in what the model reads

    extra = await registry.execute("add", {"a": 1, "b": 2, "c": 3})
    assert extra["error_type"] == INVALID_ARGUMENTS
    assert "c: Extra inputs are not permitted" in str(extra["error"])


async def test_unknown_tool_lists_the_available_ones() -> None:
    registry = ToolRegistry()
    registry.register(lambda: 1, name="one")
    result = await registry.execute("two", {"x": 1}, call_id="c9")
    assert result["success"] is False
    assert result["error_type"] == UNKNOWN_TOOL
    assert result["error"] == "unknown tool 'two'; available tools: one"
    assert result["call_id"] == "c9"


async def test_a_raising_tool_becomes_a_failed_result() -> None:
    registry = ToolRegistry()

    @registry.tool
    def divide(a: float, b: float) -> float:
        return a / b

    @registry.tool
    async def explode() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    by_zero = await registry.execute("divide", {"a": 1, "b": 0})
    assert by_zero["success"] is False
    assert by_zero["error_type"] == "ZeroDivisionError"
    assert by_zero["error"] == "tool 'divide' raised ZeroDivisionError: float division by zero"
    exploded = await registry.execute("explode", {})
    assert (exploded["success"], exploded["error_type"]) == (False, "RuntimeError")


async def test_sync_async_and_threaded_tools() -> None:
    registry = ToolRegistry()
    loop_thread = threading.get_ident()

    @registry.tool
    def inline() -> int:
        return threading.get_ident()

    @registry.tool(run_in_thread=True)
    def blocking() -> int:
        return threading.get_ident()

    @registry.tool
    async def coroutine(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    assert (await registry.execute("inline", {}))["output"] == loop_thread
    assert (await registry.execute("blocking", {}))["output"] != loop_thread
    assert (await registry.execute("coroutine", {"n": 21}))["output"] == 42


@pytest.mark.parametrize(
    "options", [{}, {"run_in_thread": True}, {"timeout_s": 5.0}], ids=["inline", "thread", "limited"]
)
async def test_a_tool_that_raises_stop_iteration_fails_as_stop_iteration(options: dict[str, object]) -> None:
    # In a thread the run hung for ever (asyncio cannot set a StopIteration on a future); inline it failed as
    # "RuntimeError: coroutine raised StopIteration".
    registry = ToolRegistry()

    def first(items: list[int]) -> int:
        return next(iter(items))

    registry.register(first, **options)  # type: ignore[arg-type]
    result = await asyncio.wait_for(registry.execute("first", {"items": []}), 10)
    assert not result["success"] and result["error_type"] == "StopIteration"
    assert result["error"] == "tool 'first' raised StopIteration: "


async def test_generator_tools_are_read_in_their_thread_and_within_their_time_limit() -> None:
    registry = ToolRegistry()
    loop_thread = threading.get_ident()
    release = threading.Event()

    @registry.tool(run_in_thread=True)
    def threads() -> Iterator[int]:
        yield threading.get_ident()

    @registry.tool(run_in_thread=True, timeout_s=0.05)
    def endless() -> Iterator[int]:
        while not release.wait(0.01):  # before, read on the event loop after the limit: it never ended
            yield 1

    @registry.tool
    async def streamed(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    assert (await registry.execute("threads", {}))["output"][0] != loop_thread
    try:
        timed_out = await asyncio.wait_for(registry.execute("endless", {}), 5)
    finally:
        release.set()
    assert timed_out["error_type"] == "timeout"
    # Before, the model read "<async_generator object ...>".
    assert (await registry.execute("streamed", {"n": 3}))["output"] == [0, 1, 2]


async def test_a_tool_whose_error_cannot_be_shown_or_whose_generator_raises_is_a_failed_result() -> None:
    # Both got out of the tool call before: the run failed, and the tool's span said "cancelled".
    registry = ToolRegistry()

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    @registry.tool
    def broken() -> None:
        raise Unprintable

    @registry.tool
    def half() -> Iterator[int]:
        yield 1
        raise ValueError("ran dry")

    failed = await registry.execute("broken", {})
    assert (failed["success"], failed["error_type"]) == (False, "Unprintable")
    assert "Unprintable whose message could not be read" in (failed["error"] or "")
    dry = await registry.execute("half", {})
    assert (dry["success"], dry["error_type"]) == (False, "ValueError")
    assert dry["error"] == "tool 'half' raised ValueError: ran dry"


async def test_a_param_model_validator_that_raises_anything_is_a_failed_result() -> None:
    # pydantic wraps only ValueError and AssertionError: a KeyError got out and failed the whole run.
    registry = ToolRegistry()

    class Path(BaseModel):
        path: str

        @field_validator("path")
        @classmethod
        def known(cls, value: str) -> str:
            return {"notes": "/srv/notes"}[value]

    @registry.tool(param_model=Path)
    def read(path: str) -> str:
        return path

    result = await registry.execute("read", {"path": "elsewhere"})
    assert (result["success"], result["error_type"]) == (False, INVALID_ARGUMENTS)
    assert result["error"] == "checking the arguments of tool 'read' raised KeyError: 'elsewhere'"
    assert (await registry.execute("read", {"path": "notes"}))["output"] == "/srv/notes"


async def test_a_key_a_tool_s_error_quotes_is_redacted_before_the_model_reads_it() -> None:
    key = "AIzaSyTOOL-ERROR-KEY-0123456789abcdef"
    register_secret(key)  # as NoN does for every key it reads
    registry = ToolRegistry()

    @registry.tool
    def fetch() -> str:
        raise RuntimeError(f"400 for url 'https://api.example/v1?key={key}'")

    result = await registry.execute("fetch", {})
    assert result["error_type"] == "RuntimeError" and key not in (result["error"] or "")
    assert REDACTED in (result["error"] or "")


async def test_stop_tool_is_stop_only_when_it_succeeds() -> None:
    registry = ToolRegistry()

    @registry.tool(is_stop_tool=True)
    def final_answer(answer: str) -> str:
        return answer.upper()

    done = await registry.execute("final_answer", {"answer": "yes"})
    assert (done["success"], done["is_stop"], done["output"]) == (True, True, "YES")
    bad = await registry.execute("final_answer", {})
    assert (bad["success"], bad["is_stop"]) == (False, False)


async def test_agent_state_is_injected_and_kept_out_of_the_schema() -> None:
    registry = ToolRegistry()

    @registry.tool
    def remember(item: str, state: AgentState) -> int:
        state.setdefault("items", []).append(item)
        return len(state["items"])

    assert registry["remember"].definition.parameters["properties"].keys() == {"item"}
    state = AgentState()
    await registry.execute("remember", {"item": "a"}, state=state)
    result = await registry.execute("remember", {"item": "b"}, state=state)
    assert result["output"] == 2
    assert state == {"items": ["a", "b"]}


async def test_an_optional_agent_state_is_the_runs_state_too() -> None:
    # A tool also called on its own takes `state: AgentState | None = None`: it was refused at registration with
    # pydantic's advice to set arbitrary_types_allowed on a model NoN builds.
    registry = ToolRegistry()

    @registry.tool
    def remember(item: str, state: AgentState | None = None) -> int:
        if state is None:
            return 0
        state.setdefault("items", []).append(item)
        return len(state["items"])

    @registry.tool
    def recall(state: Optional[AgentState] = None) -> list[str]:  # noqa: UP045 (the older spelling, on purpose)
        return list(state.get("items", [])) if state is not None else []

    assert registry["remember"].definition.parameters["properties"].keys() == {"item"}
    assert registry["recall"].definition.parameters["properties"] == {}
    state = AgentState()
    assert (await registry.execute("remember", {"item": "a"}, state=state))["output"] == 1
    assert (await registry.execute("recall", {}, state=state))["output"] == ["a"]
    assert remember("b") == 0


@pytest.mark.parametrize(
    ("name", "func", "options", "message"),
    [
        ("bad name", lambda: 1, {}, "invalid tool name"),
        ("", lambda: 1, {}, "invalid tool name"),
        # "$" matched before a final newline: the name went to the APIs with it.
        ("add\n", lambda: 1, {}, "invalid tool name"),
        ("star", lambda *args: 1, {}, "must be a named parameter"),
        ("kw", lambda **kwargs: 1, {}, "must be a named parameter"),
        ("not_callable", 42, {}, "must be callable"),
        # pydantic drops these from the schema without a word: the tool could never be called.
        ("configured", lambda model_config: 1, {}, "'model_config'. cannot be tool arguments"),
        ("private", lambda _x: 1, {}, "'_x'. cannot be tool arguments"),
        ("dumped", lambda model_dump: 1, {}, "conflicts with member"),
    ],
)
def test_tools_that_cannot_work_are_refused(name: str, func: object, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ToolRegistry().register(func, name=name, **options)  # type: ignore[arg-type]


def test_duplicates_threaded_coroutines_and_unschemable_types_are_refused() -> None:
    registry = ToolRegistry()
    registry.register(lambda: 1, name="twice")
    with pytest.raises(ConfigurationError, match="registered already"):
        registry.register(lambda: 2, name="twice")

    async def coroutine() -> None:
        return None

    with pytest.raises(ConfigurationError, match="run_in_thread is for sync functions"):
        registry.register(coroutine, run_in_thread=True)

    class Opaque:
        pass

    def takes_opaque(thing: Opaque) -> None:
        return None

    takes_opaque.__annotations__["thing"] = Opaque  # a real class, resolved without a module-level name
    with pytest.raises(ConfigurationError, match="takes_opaque"):
        registry.register(takes_opaque)


# --- time limits ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [0, -1.0, float("inf"), True, "5"])
def test_a_tool_s_time_limit_must_be_a_positive_number_of_seconds(limit: object) -> None:
    async def lookup() -> str:
        return "x"

    with pytest.raises(ConfigurationError, match="a tool's timeout_s must be a positive number of seconds"):
        ToolRegistry().register(lookup, timeout_s=limit)  # type: ignore[arg-type]


async def test_a_tool_past_its_timeout_fails_with_a_timeout_the_model_can_read_and_is_cancelled() -> None:
    registry = ToolRegistry()
    cancelled = asyncio.Event()

    @registry.tool(timeout_s=0.05)
    async def hang() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    result = await asyncio.wait_for(registry.execute("hang", {}), 5)
    assert not result["success"] and result["error_type"] == "timeout"
    assert "did not finish within its timeout_s of 0.05 s" in (result["error"] or "")
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_a_tool_that_raises_its_own_timeout_error_in_time_is_not_taken_for_its_limit() -> None:
    registry = ToolRegistry()

    @registry.tool(timeout_s=5)
    async def upstream() -> str:
        raise TimeoutError("the weather service did not answer")

    result = await registry.execute("upstream", {})
    assert not result["success"] and "the weather service did not answer" in (result["error"] or "")
    assert "timeout_s" not in (result["error"] or "")


async def test_a_threaded_sync_tool_is_bounded_and_its_late_result_dropped() -> None:
    registry = ToolRegistry()
    release = threading.Event()

    @registry.tool(timeout_s=0.05, run_in_thread=True)
    def slow() -> str:
        release.wait(5)
        return "late"

    try:
        result = await asyncio.wait_for(registry.execute("slow", {}), 5)
    finally:
        release.set()
    assert result["error_type"] == "timeout"


async def test_a_tool_within_its_timeout_answers_as_any_other() -> None:
    registry = ToolRegistry()

    @registry.tool(timeout_s=5)
    async def quick(x: int) -> int:
        return x + 1

    assert (await registry.execute("quick", {"x": 1}))["output"] == 2


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "5"])
def test_a_timeout_that_is_no_positive_number_of_seconds_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout_s must be a positive number"):
        ToolRegistry().register(lambda: None, name="t", timeout_s=bad)  # type: ignore[arg-type]


async def test_a_tool_stopped_by_its_caller_finishes_its_clean_up_before_the_caller_goes_on() -> None:
    """Cancelled from outside while it runs in its own task (as a tool with a limit does), the tool's clean-up
    runs to its end before the cancellation reaches the caller, as it would in the caller's own task; what it
    raises then is read, not logged as never retrieved."""
    registry = ToolRegistry()
    events: list[str] = []

    @registry.tool(timeout_s=5)
    async def tidy() -> str:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.05)
            events.append("cleaned up")
            raise RuntimeError("clean-up failed")
        return "never"

    call = asyncio.ensure_future(registry.execute("tidy", {}))
    await asyncio.sleep(0.02)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    events.append("caller cancelled")
    assert events == ["cleaned up", "caller cancelled"]


async def test_a_tool_whose_task_group_fails_tells_the_model_what_failed() -> None:
    # The model read only "unhandled errors in a TaskGroup (1 sub-exception)": not the lookup's error, nor its
    # hint, so it could not correct its call.
    registry = ToolRegistry()

    async def station(city: str) -> str:
        if city != "Paris":
            raise LookupError(f"no weather station for city {city!r}; known cities: Paris, Oslo")
        return "sunny"

    @registry.tool
    async def weather_many(cities: list[str]) -> list[str]:
        """The weather in each city."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(station(city)) for city in cities]
        return [task.result() for task in tasks]

    failed = await registry.execute("weather_many", {"cities": ["Paris", "Atlantis"]})
    assert not failed["success"]
    assert failed["error"] == (
        "tool 'weather_many' raised ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception): "
        "LookupError: no weather station for city 'Atlantis'; known cities: Paris, Oslo"
    )
