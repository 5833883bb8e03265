"""An agent: an LLM that calls tools in a loop until it answers, through NoN's one LLM call path.

Each step is one LLM call offered the registry's tools in the provider's native tool-calling format. When the
model asks for tools, they run one after another in the order it gave them, each result goes back into the
conversation as a ``tool`` message, and the next step begins. The run ends with a final result when

- the model answers in text without calling a tool (``output`` is the text; with an ``output_schema``, the
  JSON object it holds, asked for in the provider's native structured-output form and checked against the
  schema; an answer that does not follow it is sent back with the error, ``output_repairs`` times at most);
- a stop tool (``is_stop_tool=True``) succeeds (``output`` is the tool's output);
- the LLM call fails after its retries (``success=False``, ``error_type`` from the provider error);
- ``max_steps`` steps passed without either (``success=False``, ``error_type="max_steps"``).

A tool that fails (unknown name, invalid arguments, an exception) does not end the run: the error goes back to
the model as the tool's result so it can correct itself, and that step is reported with ``success=False``.

Telemetry: an ``invoke_agent {name}`` span covers the run and holds each step's ``chat {model}`` spans and
``execute_tool {tool}`` spans; ``nons.tool.calls`` counts tool calls by tool and outcome.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nons.base.errors import (
    ConfigurationError,
    InputValidationError,
    OutputParseError,
    ProviderError,
    error_type_of,
)
from nons.base.messages import LLMResponse, Message, OutputRepair
from nons.base.results import LLMCallRecord
from nons.base.settings import get_settings
from nons.base.types import ErrorPolicy, LayerConfig, ModelConfig
from nons.core.agents.run import AgentRun, AgentStep, initial_state
from nons.core.agents.telemetry import record_run
from nons.core.agents.tool_calls import execute_tool, tool_message
from nons.core.agents.tools import AgentState, ToolRegistry, ToolResult
from nons.core.call import CallSite, PassContext, call_llm
from nons.core.call.context import cancellation_type
from nons.core.inputs import check_name, check_text
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.pricing import load_prices, prices_loaded
from nons.observability import names, spans
from nons.observability.auto import setup_telemetry, telemetry_pending
from nons.operators.structured import check_schema, repair_turns, repairs_allowed, try_read
from nons.providers.registry import default_model, resolve_provider

__all__ = ["MAX_STEPS_REACHED", "Agent"]

#: ``error_type`` of the final result of a run that used up ``max_steps``.
MAX_STEPS_REACHED = "max_steps"

@dataclass(slots=True)
class _Run:
    """Everything one run owns: nothing here is shared between runs."""

    run_id: str
    ctx: PassContext
    site: CallSite
    messages: list[Message]
    state: AgentState
    scope: spans.SpanScope
    trace_id: str | None
    started: float
    #: The model the run's calls ask for first (the config's, else its provider's default).
    model: str
    records: list[LLMCallRecord] = field(default_factory=list)
    steps: int = 0
    #: The repair the next call makes (an answer that did not follow the output schema), and how many so far.
    repair: OutputRepair | None = None
    repairs: int = 0


class Agent:
    """An LLM with tools, run step by step until it answers.

    Args:
        model: what the agent's LLM calls use. A :class:`~nons.core.types.ModelConfig`; or a
            :class:`~nons.core.node.Node`, whose model config, fallbacks, priority and prompt context (added to
            the system prompt) are used, not its operator; or a one-node :class:`~nons.core.network.NoN`,
            meaning that node. Anything else is a :class:`~nons.base.errors.ConfigurationError`.
        registry: the tools the model is offered.
        name: the agent's name, in span names (``invoke_agent {name}``) and ``gen_ai.agent.name``; its LLM
            calls carry it as the network name on the cost metric.
        max_steps: the most LLM calls one run makes.
        max_llm_retry: how many times a failed LLM call is retried (retryable errors only, with backoff). When
            the model config has fallbacks, they are tried after the retries.
        system_prompt: the system prompt of every call. Describe the tools and when to use each: models (some
            more than others) choose tools by what the prompt and the tool descriptions say.
        state: the initial state of each run, deep-copied per run (see
            :class:`~nons.core.agents.tools.AgentState`).
        output_schema: a JSON Schema (an object) the final text answer must follow; the final result's
            ``output`` is then the answer's JSON object. Unset: the answer is free text.
        tool_choice: ``"auto"`` (the model decides), ``"required"`` (every step must call a tool: end the run
            with a stop tool) or a tool's name (every step calls that tool).

    ``run(task)`` gives an :class:`AgentRun`: iterate it for each step, or await it for the final result.
    Runs share nothing but the agent's configuration, so one agent can serve many runs at once.
    """

    def __init__(
        self,
        model: ModelConfig | Node | NoN,
        registry: ToolRegistry,
        *,
        name: str = "agent",
        max_steps: int = 10,
        max_llm_retry: int = 2,
        system_prompt: str = "",
        state: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
        tool_choice: str = "auto",
    ) -> None:
        if not isinstance(registry, ToolRegistry):
            raise ConfigurationError(f"registry must be a ToolRegistry, got {type(registry).__name__}")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("an agent's name must be a non-empty string")
        check_name(name, "an agent's name")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigurationError(f"max_steps must be an integer of 1 or more, got {max_steps!r}")
        if isinstance(max_llm_retry, bool) or not isinstance(max_llm_retry, int) or not 0 <= max_llm_retry <= 100:
            raise ConfigurationError(f"max_llm_retry must be an integer from 0 to 100, got {max_llm_retry!r}")
        if not isinstance(system_prompt, str):
            raise ConfigurationError("system_prompt must be a string")
        if output_schema is not None:
            check_schema(output_schema)
        if tool_choice not in ("auto", "required", *registry.names):
            raise ConfigurationError(
                f"tool_choice must be 'auto', 'required' or a tool's name ({', '.join(registry.names)}), "
                f"got {tool_choice!r}"
            )
        if tool_choice == "required" and not registry.names:
            raise ConfigurationError("tool_choice='required' needs at least one tool in the registry")
        config, fallbacks, context, priority = _model_of(model)
        self.name = name
        self.id = uuid.uuid4().hex[:16]
        self.registry = registry
        self.max_steps = max_steps
        self.max_llm_retry = max_llm_retry
        self.model_config = config
        self.fallbacks = fallbacks
        self.priority = priority
        self.system_prompt = "\n\n".join(p for p in (system_prompt, context) if p)
        self.initial_state: dict[str, Any] = initial_state(state)
        self.output_schema = dict(output_schema) if output_schema is not None else None
        self.tool_choice = tool_choice
        policy = ErrorPolicy.FALLBACK_MODEL if (fallbacks or config.fallbacks) else ErrorPolicy.RETRY_WITH_BACKOFF
        self.layer_config = LayerConfig(error_policy=policy, max_retries=max_llm_retry)

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, tools={self.registry.names!r}, max_steps={self.max_steps})"

    def run(self, task: str, *, conversation_id: str | None = None) -> AgentRun:
        """Start a run on ``task``: iterate the result for each step, or await it for the final one.

        ``conversation_id`` is the caller's id of the conversation (session, thread) this run belongs to: it
        becomes ``gen_ai.conversation.id`` on every span of the run (the agent's, its LLM calls', its tools',
        and those of networks or agents its tools start). Unset, the run's own id is used.
        """
        settings = get_settings()
        if conversation_id is not None:
            if not isinstance(conversation_id, str) or not conversation_id.strip():
                raise InputValidationError("conversation_id must be a non-empty string")
            check_text(conversation_id, "the conversation_id")
        if not isinstance(task, str):
            raise InputValidationError(f"an agent's task must be a string, got {type(task).__name__}")
        if not task.strip():
            raise InputValidationError("an agent's task must not be empty or whitespace")
        check_text(task, "the agent's task")
        if len(task) > settings.max_input_chars:
            raise InputValidationError(
                f"the task is {len(task):,} characters, over the limit of {settings.max_input_chars:,} "
                "(NON_MAX_INPUT_CHARS)"
            )
        return AgentRun(self._steps(task, conversation_id))

    async def run_to_completion(self, task: str, *, conversation_id: str | None = None) -> AgentStep:
        """Run ``task`` to the end and return the final step (the same as ``await agent.run(task)``).

        For batching: ``await asyncio.gather(*(agent.run_to_completion(t) for t in tasks))``.
        """
        return await self.run(task, conversation_id=conversation_id)

    # -- the run ------------------------------------------------------------------------------------------

    async def _steps(self, task: str, conversation_id: str | None) -> AsyncGenerator[AgentStep, None]:
        if telemetry_pending(get_settings()):  # the first run sets telemetry up, its imports off the event loop
            await setup_telemetry()
        if self.model_config.provider is None and self.model_config.model_name is not None and not prices_loaded():
            await load_prices()  # the price table says whose model a name is: loaded off the event loop too
        run = self._start(task, conversation_id)
        final: AgentStep | None = None
        error: BaseException | None = None
        at_yield = False
        try:
            for number in range(1, self.max_steps + 1):
                step = await self._step(run, number)
                # Before the step is seen: a run inside a node (or a tool) has spent this from the node's pass.
                run.ctx.hand_over()
                if step["is_final"]:
                    final = step
                at_yield = True
                yield step
                at_yield = False
                if final is not None:
                    return
            final = self._result(
                run, self.max_steps, success=False, is_final=True, error_type=MAX_STEPS_REACHED,
                error=self._max_steps_error(run),
            )
            at_yield = True
            yield final
        except BaseException as exc:
            # What arrives at a yield comes from the consumer, which stopped early: a break or aclose()
            # (GeneratorExit), or the CancelledError of the closing task its event loop cancels as it shuts down.
            # Not a failure of the run.
            if not at_yield:
                error = exc
            raise
        finally:
            self._finish(run, final, error)

    def _max_steps_error(self, run: _Run) -> str:
        reached = f"max_steps ({self.max_steps}) reached without a final answer"
        if run.repair is not None:  # the last step was an answer off the output schema, its repair not yet asked
            # The reason's kind only: the parse error may quote the answer, and this message is the span's status.
            return f"{reached}: the model's last answer did not follow the output schema ({run.repair.reason}; " \
                "the step before this one says how); raise max_steps"
        return f"{reached}: the model kept calling tools; raise max_steps, or give it a stop tool and say in " \
            "the system prompt when to use it"

    def _start(self, task: str, conversation_id: str | None) -> _Run:
        # The state is copied before the span starts: a state that cannot be copied fails the run before there
        # is a span to leave open.
        state = AgentState(copy.deepcopy(self.initial_state))
        settings = get_settings()
        run_id = uuid.uuid4().hex[:16]
        ctx = PassContext.start(self.name, run_id, settings, conversation_id)
        if ctx.conversation_id is None:
            ctx.conversation_id = run_id
        inst = ctx.instruments
        operator = names.AGENT_OPERATOR
        site = CallSite(self.id, operator, self.model_config, self.fallbacks, self.layer_config, self.priority)
        provider = resolve_provider(self.model_config, settings)
        model = self.model_config.model_name or default_model(provider)
        scope = spans.NO_SPAN
        if inst.tracing:
            scope = spans.start(
                inst.tracer,
                names.agent_span_name(self.name),
                {
                    names.GEN_AI_OPERATION_NAME: names.OP_INVOKE_AGENT,
                    names.GEN_AI_PROVIDER_NAME: names.genai_provider_name(provider),
                    names.GEN_AI_AGENT_NAME: self.name,
                    names.GEN_AI_AGENT_ID: self.id,
                    names.GEN_AI_CONVERSATION_ID: ctx.conversation_id,
                    names.GEN_AI_REQUEST_MODEL: model,
                },
            )
        return _Run(
            run_id, ctx, site, [Message("user", task)], state, scope, scope.trace_id, time.perf_counter(), model
        )

    async def _step(self, run: _Run, number: int) -> AgentStep:
        run.steps = number
        # A run is an async generator: a caller may step it from another event loop (a sync wrapper's own loop
        # per step). Its calls must be admitted in the loop they run in.
        run.ctx.loop = asyncio._get_running_loop()
        # The run's span is current only while this step's own code runs, never across the generator's
        # yield: there, the consumer's code runs in the same context and must not find the agent span in it.
        with run.scope:
            try:
                response = await call_llm(
                    run.ctx, run.site, run.messages, run.records,
                    system=self.system_prompt or None, tools=self.registry.definitions(),
                    response_schema=self.output_schema, repair=run.repair,
                    tool_choice=None if self.tool_choice == "auto" else self.tool_choice,
                )
            except ProviderError as error:
                return self._result(
                    run, number, success=False, is_final=True, error_type=error.error_type,
                    error=f"the LLM call failed: {error}",
                )
            run.repair = None
            run.messages.append(Message("assistant", response.text, tool_calls=response.tool_calls))
            if not response.tool_calls:
                return self._answer(run, number, response)
            results: list[ToolResult] = []
            for call in response.tool_calls:
                result = await execute_tool(
                    self.name, self.registry, run.ctx, run.state, call, self.output_schema, run.records
                )
                results.append(result)
                run.messages.append(
                    Message(
                        "tool", tool_message(result), tool_call_id=call.id, name=call.name,
                        is_error=not result["success"],
                    )
                )
                if result["is_stop"]:
                    # The run ends here: later calls of this turn would have no one to read their results.
                    return self._result(
                        run, number, success=True, is_final=True, text=response.text, tool_calls=results,
                        output=result["output"],
                    )
        failed = [r for r in results if not r["success"]]
        return self._result(
            run, number, success=not failed, is_final=False, text=response.text, tool_calls=results,
            error="; ".join(str(r["error"]) for r in failed) or None,
            error_type=failed[0]["error_type"] if failed else None,
        )

    def _answer(self, run: _Run, number: int, response: LLMResponse) -> AgentStep:
        """The step of a text answer: final, unless it does not follow the output schema and a repair is left
        (then the error goes back to the model, and the next step is the repair)."""
        if self.output_schema is None:
            return self._result(run, number, success=True, is_final=True, text=response.text, output=response.text)
        value, reason, error = try_read(response.text, self.output_schema, response.finish_reason)
        if value is not None:
            return self._result(run, number, success=True, is_final=True, text=response.text, output=value)
        assert error is not None
        allowed = repairs_allowed(self.model_config)
        if run.repairs >= allowed:
            tried = f" (after {allowed} repair{'s' if allowed != 1 else ''})" if allowed else ""
            return self._result(
                run, number, success=False, is_final=True, text=response.text,
                error=f"{error}{tried}", error_type=OutputParseError.error_type,
            )
        run.repairs += 1
        run.repair = OutputRepair(run.repairs, reason, str(error), response.answered_by)
        run.messages[-1:] = repair_turns(response.text, error, reason)  # the answer as a repair sends it back
        return self._result(
            run, number, success=False, is_final=False, text=response.text, error=str(error),
            error_type=OutputParseError.error_type,
        )

    def _result(
        self,
        run: _Run,
        number: int,
        *,
        success: bool,
        is_final: bool,
        text: str = "",
        tool_calls: list[ToolResult] | None = None,
        output: Any = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> AgentStep:
        inp = out = unpriced = unreported = 0
        cost = 0.0
        for record in run.records:
            inp += record.usage.input_tokens
            out += record.usage.output_tokens
            unreported += not record.usage.reported
            if record.cost_usd is None:  # unknown: counted apart, never as a zero cost
                unpriced += 1
                cost += record.known_part_usd
            else:
                cost += record.cost_usd
        return AgentStep(
            step=number, success=success, error=error, error_type=error_type, text=text,
            tool_calls=tool_calls or [], is_final=is_final, output=output, state=run.state, run_id=run.run_id,
            trace_id=run.trace_id, llm_calls=len(run.records), input_tokens=inp, output_tokens=out, cost_usd=cost,
            unpriced_calls=unpriced, usage_unreported_calls=unreported,
        )

    def _finish(self, run: _Run, final: AgentStep | None, error: BaseException | None) -> None:
        run.ctx.hand_over()  # what a step that did not finish spent
        error_type: str | None = None
        if isinstance(error, asyncio.CancelledError):
            error_type = cancellation_type(error, run.ctx)  # "timeout" when a layer's or pass's timeout cut it
        elif error is not None:
            error_type = error_type_of(error)
        elif final is not None and not final["success"]:
            error_type = final["error_type"] or names.OUTCOME_FAILURE
        inst = run.ctx.instruments
        if inst.metrics:
            single_model = None if (self.fallbacks or self.model_config.fallbacks) else run.model
            record_run(
                inst, self.name, single_model, error_type, time.perf_counter() - run.started, run.scope.context()
            )
        scope = run.scope
        if not scope.tracing:
            return
        scope.roll_up(run.records, {names.AGENT_STEPS: run.steps})
        if isinstance(error, asyncio.CancelledError) and error_type is not None:
            scope.fail_as(error_type, "the run's layer or pass timed out" if error_type == "timeout" else "cancelled")
        elif error is not None:
            scope.fail(error, str(error) or type(error).__name__)
        elif error_type is not None:
            scope.fail_as(error_type, (final["error"] if final is not None else None) or "")
        scope.end()


def _model_of(model: object) -> tuple[ModelConfig, tuple[ModelConfig, ...], str, int]:
    """(model config, fallbacks, prompt context, priority) of what an Agent was given."""
    if isinstance(model, ModelConfig):
        return model, (), "", 0
    if isinstance(model, Node):
        return model.model_config, model.fallbacks, model.additional_prompt_context, model.priority
    if isinstance(model, NoN):
        nodes = [node for layer in model.layers for node in layer.nodes]
        if len(nodes) != 1:
            raise ConfigurationError(
                f"an Agent takes a network of exactly one node (whose model it uses); {model.name!r} has "
                f"{len(nodes)} nodes in {len(model.layers)} layers. Pass a ModelConfig or a Node instead"
            )
        return _model_of(nodes[0])
    raise ConfigurationError(
        f"an Agent takes a ModelConfig, a Node or a one-node NoN, got {type(model).__name__}"
    )
