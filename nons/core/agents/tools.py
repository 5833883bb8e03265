"""Tools an agent can call: :class:`ToolRegistry`, its ``@registry.tool`` decorator, and :class:`ToolResult`.

A tool is a Python function, async or sync, whose parameters are described by a pydantic model: either one
given as ``param_model`` or one built from the function's signature (type hints, defaults, and
``Annotated[..., Field(description=...)]`` for per-parameter descriptions). The model's JSON Schema is what
the LLM is offered, and the model validates the arguments the LLM sends before the function runs::

    registry = ToolRegistry()

    @registry.tool(description="Add two numbers.")
    def add(a: float, b: float) -> float:
        return a + b

    @registry.tool(is_stop_tool=True, description="Give the final answer and end the run.")
    def final_answer(answer: str) -> str:
        return answer

Running a tool never raises for the tool's own failures: an unknown tool, arguments that do not validate, or
an exception inside the function become a failed :class:`ToolResult` whose ``error`` the agent feeds back to
the model so that it can correct itself. Only cancellation propagates.

Sync tools run inline on the event loop: right for quick functions (arithmetic, lookups in memory), and it
keeps them deterministic and free of thread hand-offs. A sync tool that blocks (file or network I/O, heavy
CPU) should say ``run_in_thread=True``; it then runs in ``asyncio.to_thread`` (with the caller's context, so
its spans still nest under the tool's span).

A tool may also declare one parameter annotated :class:`AgentState` (or ``AgentState | None``, for a tool also
called on its own): it receives the state of the agent run it was called in (a dict private to that run), and
that parameter is not part of the schema the LLM sees.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, TypedDict, TypeVar, Union, get_args, get_origin, overload

from pydantic import BaseModel, PydanticUserError, ValidationError

from nons.base.errors import ConfigurationError, error_type_of, message_of
from nons.base.messages import ToolDefinition
from nons.base.redaction import clean
from nons.base.timeouts import positive_seconds
from nons.core.agents.signatures import check_accepts, doc_summary, params_model, signature_of, type_hints
from nons.core.agents.tool_limits import within_limit
from nons.core.agents.tool_output import output_text

__all__ = [
    "INVALID_ARGUMENTS",
    "UNKNOWN_TOOL",
    "AgentState",
    "Tool",
    "ToolRegistry",
    "ToolResult",
]

F = TypeVar("F", bound=Callable[..., Any])

#: ``error_type`` of a result for a tool name the registry does not know.
UNKNOWN_TOOL = "unknown_tool"
#: ``error_type`` of a result whose arguments did not validate against the tool's parameter model.
INVALID_ARGUMENTS = "invalid_arguments"
#: ``error_type`` of a tool whose output cannot be sent to the model (a value that contains itself).
INVALID_OUTPUT = "invalid_output"

# The names the three providers all accept (OpenAI and Anthropic: 1-64 of these characters; Gemini: similar).
# fullmatch, not match: "$" also matches before a final newline, which then went to the APIs in the name.
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


class ToolResult(TypedDict):
    """The outcome of one tool call: a plain dict, so ``result["success"]`` and ``result.get("error")`` work.

    Keys:
        success: whether the tool ran and returned.
        tool_name: the name the model called.
        output: what the tool returned (``None`` on failure).
        error: what went wrong, in words meant for the model as much as for people (``None`` on success).
        error_type: ``unknown_tool``, ``invalid_arguments``, or the exception's class name (``None`` on
            success); the value of ``error.type`` in telemetry.
        is_stop: ``True`` when a stop tool succeeded: the agent run ends with this output.
        call_id: the provider's id of the call (``None`` when the tool was run directly).
        arguments: the arguments the model sent, as sent.
    """

    success: bool
    tool_name: str
    output: Any
    error: str | None
    error_type: str | None
    is_stop: bool
    call_id: str | None
    arguments: dict[str, Any]


class AgentState(dict[str, Any]):
    """The state of one agent run: a dict that starts as a deep copy of the agent's ``state`` argument.

    A tool receives it by declaring a parameter annotated ``AgentState``. Each run has its own, so
    concurrent runs of one agent never see each other's state.
    """


@dataclass(frozen=True, slots=True)
class Tool:
    """A registered tool. Build tools with :meth:`ToolRegistry.tool` rather than directly."""

    name: str
    description: str
    func: Callable[..., Any]
    param_model: type[BaseModel]
    is_stop: bool = False
    run_in_thread: bool = False
    #: The name of the parameter that receives the run's :class:`AgentState`, if the function has one.
    state_param: str | None = None
    #: Seconds a call may run (``None``: no limit of its own); past them it fails with error type ``timeout``.
    timeout_s: float | None = None
    definition: ToolDefinition = field(init=False)

    def __post_init__(self) -> None:
        schema = self.param_model.model_json_schema()
        # The model class name is an implementation detail; providers show the title to the model otherwise.
        schema.pop("title", None)
        object.__setattr__(self, "definition", ToolDefinition(self.name, self.description, schema))

    async def run(
        self,
        arguments: Mapping[str, Any],
        *,
        state: AgentState | None = None,
        call_id: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> ToolResult:
        """Validate ``arguments`` and run the tool. Failures are returned, never raised (except the cancellation
        of the task running it); ``on_error`` is handed the exception the tool raised, if it raised one."""
        args = dict(arguments)
        try:
            params = self.param_model.model_validate(args)
        except ValidationError as error:
            return _failure(
                self.name, args, call_id, INVALID_ARGUMENTS,
                f"invalid arguments for tool {self.name!r}: {_describe(error)}",
            )
        except Exception as error:  # a validator of the param model raised what pydantic does not wrap (KeyError)
            return _failure(
                self.name, args, call_id, INVALID_ARGUMENTS,
                f"checking the arguments of tool {self.name!r} raised {type(error).__name__}: {message_of(error)}",
            )
        # Attributes, not model_dump(): nested models reach the function as models, as their hints say.
        kwargs = {name: getattr(params, name) for name in type(params).model_fields}
        if self.state_param is not None:
            kwargs[self.state_param] = state if state is not None else AgentState()
        try:
            call = self._call(kwargs)
            output = await (call if self.timeout_s is None else within_limit(call, self.name, self.timeout_s))
        except (Exception, asyncio.CancelledError) as raised:
            if isinstance(raised, asyncio.CancelledError) and _being_cancelled():
                raise
            failure: BaseException = raised.error if isinstance(raised, _Stopped) else raised
            if on_error is not None:
                on_error(failure)
            # error.type as NoN's own errors give it (a NodeExecutionError says its cause's: output_parse_error for
            # an answer that did not parse); a CancelledError the tool let out of a task of its own is its class.
            cancelled = isinstance(failure, asyncio.CancelledError)
            error_type = type(failure).__name__ if cancelled else error_type_of(failure)
            return _failure(
                self.name, args, call_id, error_type,
                f"tool {self.name!r} raised {type(failure).__name__}: {message_of(failure)}",
            )  # fmt: skip
        try:
            output_text(output)
        except Exception as error:  # a value that contains itself, or a str() that raises
            return _failure(
                self.name, args, call_id, INVALID_OUTPUT,
                f"tool {self.name!r} returned a {type(output).__name__} that cannot be sent as JSON: "
                f"{message_of(error)}",
            )
        return ToolResult(
            success=True, tool_name=self.name, output=output, error=None, error_type=None,
            is_stop=self.is_stop, call_id=call_id, arguments=args,
        )

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        # A generator is read here, once (the output check and the model's message would each empty it), and so
        # within the tool's time limit, in its thread when it has one, and with its errors counted as the tool's.
        if self.run_in_thread:
            output = await asyncio.to_thread(_called, self.func, kwargs)
        else:
            output = _called(self.func, kwargs)
        # Covers async functions and sync callables that hand back an awaitable (a partial of one, say).
        if inspect.isawaitable(output):
            output = await output
        if inspect.isasyncgen(output):
            output = [item async for item in output]
        return output


class _Stopped(Exception):
    """A ``StopIteration`` a synchronous tool raised, carried out of its call: asyncio cannot set one on a
    future (a thread tool's run hung for ever) and a coroutine turns it into a ``RuntimeError``."""

    def __init__(self, error: StopIteration | StopAsyncIteration) -> None:
        super().__init__()
        self.error = error


def _called(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """``func(**kwargs)``, a generator read to a list, and a ``StopIteration`` out of it carried as
    :class:`_Stopped`."""
    try:
        output = func(**kwargs)
        return list(output) if inspect.isgenerator(output) else output
    except (StopIteration, StopAsyncIteration) as error:  # next() on an empty iterator, in the tool
        raise _Stopped(error) from None


#: How a state parameter's annotation reads when it could not be resolved.
_STATE_NAMES = frozenset({"AgentState", "AgentState | None", "Optional[AgentState]"})


def _is_state(hint: Any) -> bool:
    """Whether ``hint`` is ``AgentState``, or ``AgentState | None`` for a tool that is also called on its own (it
    went to the tool's parameter model before, where pydantic refused it with advice no user could follow)."""
    if hint is AgentState:
        return True
    return get_origin(hint) in (Union, UnionType) and set(get_args(hint)) == {AgentState, type(None)}


class ToolRegistry:
    """The tools an agent may call, by name.

    Register with the decorator, bare (``@registry.tool``) or with options (``@registry.tool(name=...,
    description=..., param_model=..., is_stop_tool=..., run_in_thread=..., timeout_s=...)``), or with
    :meth:`register`.
    The decorator returns the function unchanged, so it can still be called directly.
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    @overload
    def tool(self, func: F, /) -> F: ...

    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        param_model: type[BaseModel] | None = None,
        is_stop_tool: bool = False,
        run_in_thread: bool = False,
        timeout_s: float | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        param_model: type[BaseModel] | None = None,
        is_stop_tool: bool = False,
        run_in_thread: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """Register the decorated function as a tool.

        Args:
            name: the name the model calls it by (default: the function's name).
            description: what it does, for the model (default: the first paragraph of the docstring). Say
                when to use it: models choose tools by their descriptions.
            param_model: a pydantic model of the parameters; the function then receives its fields as keyword
                arguments (default: a model built from the function's signature).
            is_stop_tool: a successful call ends the agent run, with the tool's output as the final output.
            run_in_thread: run a sync function in a worker thread (for tools that block).
            timeout_s: seconds a call may run; past them the call fails with error type ``timeout``, which the
                model reads (default: no limit of its own). An async tool is cancelled; a sync tool can only be
                bounded with ``run_in_thread`` (its thread then runs on, its result dropped).
        """

        def decorate(target: Callable[..., Any]) -> Callable[..., Any]:
            self.register(
                target, name=name, description=description, param_model=param_model,
                is_stop_tool=is_stop_tool, run_in_thread=run_in_thread, timeout_s=timeout_s,
            )
            return target

        return decorate(func) if func is not None else decorate

    def register(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        param_model: type[BaseModel] | None = None,
        is_stop_tool: bool = False,
        run_in_thread: bool = False,
        timeout_s: float | None = None,
    ) -> Tool:
        """Register ``func`` as a tool (the decorator's work, as a call) and return the :class:`Tool`."""
        if not callable(func):
            raise ConfigurationError(f"a tool must be callable, got {type(func).__name__}")
        limit = positive_seconds(timeout_s, "a tool's timeout_s") if timeout_s is not None else None
        tool_name = name if name is not None else getattr(func, "__name__", "")
        if not isinstance(tool_name, str) or not _TOOL_NAME.fullmatch(tool_name):
            raise ConfigurationError(
                f"invalid tool name {tool_name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or '_'"
            )
        if tool_name in self._tools:
            raise ConfigurationError(f"a tool named {tool_name!r} is registered already")
        if run_in_thread and inspect.iscoroutinefunction(func):
            raise ConfigurationError(f"tool {tool_name!r} is async: run_in_thread is for sync functions")
        signature = signature_of(func, tool_name)
        hints = type_hints(func)
        state_param = next(
            # By its name too: a hint that could not be resolved is a string (see type_hints).
            (p.name for p in signature.parameters.values() if _is_state(hints.get(p.name))
             or (p.name not in hints and p.annotation in _STATE_NAMES)),
            None,
        )  # fmt: skip
        if param_model is None:
            model = params_model(tool_name, signature, hints, skip=state_param)
        else:
            if not (isinstance(param_model, type) and issubclass(param_model, BaseModel)):
                raise ConfigurationError(f"param_model of tool {tool_name!r} must be a pydantic BaseModel subclass")
            model = param_model
            check_accepts(tool_name, signature, [*model.model_fields, *([state_param] if state_param else [])])
        text = description if description is not None else doc_summary(func)
        try:
            tool = Tool(
                name=tool_name, description=text, func=func, param_model=model, is_stop=is_stop_tool,
                run_in_thread=run_in_thread, state_param=state_param,
                timeout_s=limit,
            )
        except PydanticUserError as error:  # a parameter type that has no JSON Schema
            raise ConfigurationError(f"tool {tool_name!r}: {error}") from None
        self._tools[tool_name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({list(self._tools)!r})"

    @property
    def names(self) -> list[str]:
        """The registered tool names, in registration order."""
        return list(self._tools)

    def definitions(self) -> list[ToolDefinition]:
        """What the LLM is offered: one :class:`~nons.providers.base.ToolDefinition` per tool."""
        return [t.definition for t in self._tools.values()]

    async def execute(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        state: AgentState | None = None,
        call_id: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        arguments_error: str | None = None,
    ) -> ToolResult:
        """Run tool ``name`` with ``arguments`` (see :meth:`Tool.run`). An unknown name is a failed result that
        lists the known ones; so are arguments the model sent that could not be read (``arguments_error``, see
        :class:`~nons.base.messages.ToolCall`), which the tool never sees."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return _failure(
                name, dict(arguments), call_id, UNKNOWN_TOOL, f"unknown tool {name!r}; available tools: {known}"
            )
        if arguments_error is not None:
            return _failure(
                name, dict(arguments), call_id, INVALID_ARGUMENTS,
                f"the arguments of tool {name!r} could not be read: {arguments_error}; send them as one JSON object",
            )  # fmt: skip
        return await tool.run(arguments, state=state, call_id=call_id, on_error=on_error)


def _being_cancelled() -> bool:
    """Whether the running task is being cancelled: a CancelledError it sees is then its own, not one a tool let
    out of a task it awaited. Python 3.10 cannot tell them apart (``Task.cancelling`` is 3.11's): there, every
    CancelledError is taken as the task's own."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _failure(
    name: str, arguments: dict[str, Any], call_id: str | None, error_type: str, error: str
) -> ToolResult:
    # The message goes to the model (any vendor's, on every later call) and to the caller: a key NoN knows that
    # the tool's error quotes (a URL with ?key=, say) is redacted, as in NoN's own errors.
    return ToolResult(
        success=False, tool_name=name, output=None, error=clean(error), error_type=error_type, is_stop=False,
        call_id=call_id, arguments=arguments,
    )


def _describe(error: ValidationError) -> str:
    # One line per problem, without pydantic's documentation URLs: this text goes back to the model.
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)
