"""Every telemetry name NoN emits: span names, attribute keys, event names, metric names and their units.

This is the one place where names are spelled. GenAI names are spelled here as strings, as the current GenAI
semantic conventions spell them (``gen_ai.provider.name``, not the older ``gen_ai.system``), instead of being
imported from ``opentelemetry-semantic-conventions``: its GenAI constants live in the incubating package, which
renames them between releases, and pinning it would tie NoN to one OpenTelemetry SDK release (each SDK pins its
own semantic-conventions version). A rename upstream touches this file only. ``../shared/design.md`` section 5 is
the contract these names implement.
"""

from __future__ import annotations

from typing import Final

# --- instrumentation scope -------------------------------------------------------------------------------
SCOPE: Final = "nons"

# --- standard switches ------------------------------------------------------------------------------------
#: The GenAI conventions' variable that turns on recording of prompt, completion and tool text.
ENV_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
#: Its values, as the contrib ``opentelemetry-util-genai`` reads them (``true``, ``1`` and ``yes`` mean
#: ``SPAN_ONLY``, NoN's meaning before these modes existed).
CAPTURE_NO_CONTENT: Final = "NO_CONTENT"
CAPTURE_SPAN_ONLY: Final = "SPAN_ONLY"
CAPTURE_EVENT_ONLY: Final = "EVENT_ONLY"
CAPTURE_SPAN_AND_EVENT: Final = "SPAN_AND_EVENT"

# --- provider names ---------------------------------------------------------------------------------------
#: ``gen_ai.provider.name`` of each provider, keyed by ``ModelProvider`` value. Kept here, not read from the
#: provider classes, so that labelling a metric or a span never imports a vendor SDK.
PROVIDER_NAMES: Final = {
    "anthropic": "anthropic",
    "openai": "openai",
    "google": "gcp.gemini",
    "mock": "nons.simulated",  # not a real system: the simulated provider says so in every signal
}


def genai_provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` of a ``ModelProvider`` (or its value); unknown values pass through."""
    key = str(provider)
    return PROVIDER_NAMES.get(key, key)


# --- span names (formatted with the subject) --------------------------------------------------------------
OP_WORKFLOW: Final = "invoke_workflow"
OP_CHAT: Final = "chat"
# Gemini's generateContent: the conventions' example value, and the contrib Google instrumentation's.
OP_GENERATE_CONTENT: Final = "generate_content"
#: The operations of an LLM call's span (a provider names its own: ``Provider.operation_name``).
LLM_OPERATIONS: Final = frozenset({OP_CHAT, OP_GENERATE_CONTENT})
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_EXECUTE_TOOL: Final = "execute_tool"
#: The operator name an agent's LLM calls carry on the cost metric (a node's carry its operator's name).
AGENT_OPERATOR: Final = "agent"


def network_span_name(network: str) -> str:
    return f"{OP_WORKFLOW} {network}"


def layer_span_name(index: int) -> str:
    return f"nons.layer {index}"


def node_span_name(operator: str) -> str:
    return f"nons.node {operator}"


def llm_span_name(model: str, operation: str = OP_CHAT) -> str:
    return f"{operation} {model}"


def agent_span_name(agent: str) -> str:
    return f"{OP_INVOKE_AGENT} {agent}"


def tool_span_name(tool: str) -> str:
    return f"{OP_EXECUTE_TOOL} {tool}"


# --- GenAI attributes (semantic conventions) -------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
# No released convention for cost yet; OpenLIT and LiteLLM use this name, in USD.
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"  # recorded only when content capture is on
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"  # recorded only when content capture is on
GEN_AI_TOOL_DEFINITIONS: Final = "gen_ai.tool.definitions"  # recorded only when content capture is on
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_WORKFLOW_NAME: Final = "gen_ai.workflow.name"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
OUTPUT_TYPE_JSON: Final = "json"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
TOOL_TYPE_FUNCTION: Final = "function"  # the conventions' value for a tool that runs in the client

ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# --- NoN attributes ---------------------------------------------------------------------------------------
NETWORK_NAME: Final = "nons.network.name"
NETWORK_ID: Final = "nons.network.id"
LAYER_INDEX: Final = "nons.layer.index"
LAYER_WIDTH: Final = "nons.layer.width"
LAYER_SUCCEEDED: Final = "nons.layer.succeeded"
LAYER_FAILED: Final = "nons.layer.failed"
ERROR_POLICY: Final = "nons.error_policy"
NODE_ID: Final = "nons.node.id"
OPERATOR_NAME: Final = "nons.operator.name"
ATTEMPTS: Final = "nons.attempts"
SCHEDULER_WAIT_S: Final = "nons.scheduler.wait_s"
SIMULATED: Final = "nons.simulated"
COST_UNKNOWN: Final = "nons.cost.unknown"
OUTCOME: Final = "nons.outcome"
LIMIT_KIND: Final = "nons.limit.kind"
# Roll-ups: named apart from gen_ai.usage.* so that summing gen_ai.usage.cost over spans never double counts.
ROLLUP_COST: Final = "nons.cost.total_usd"
ROLLUP_INPUT_TOKENS: Final = "nons.usage.input_tokens"
ROLLUP_OUTPUT_TOKENS: Final = "nons.usage.output_tokens"
ROLLUP_UNPRICED_CALLS: Final = "nons.cost.unpriced_calls"
#: Calls whose server reported no usage: their tokens are not in the roll-up's token counts. Set only when > 0.
ROLLUP_USAGE_UNREPORTED_CALLS: Final = "nons.usage.unreported_calls"
ROLLUP_LLM_CALLS: Final = "nons.llm_calls"
AGENT_STEPS: Final = "nons.agent.steps"
# The value of gen_ai.tool.name on the tool-call counter for a tool the model made up (kept out of the metric's
# labels: a model can invent any number of names).
TOOL_NAME_UNREGISTERED: Final = "_unregistered"
#: The ``error.type`` of a call to a tool the registry does not know (``nons.core.agents.tools.UNKNOWN_TOOL``).
TOOL_ERROR_UNKNOWN: Final = "unknown_tool"

CACHE_HIT: Final = "nons.cache.hit"
COST_SAVED: Final = "nons.cost.saved"
BUDGET_NAME: Final = "nons.budget.name"
BUDGET_SCOPE: Final = "nons.budget.scope"

OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"

# --- span events and log events ---------------------------------------------------------------------------
#: The GenAI conventions' event with a call's content, emitted in the EVENT_ONLY and SPAN_AND_EVENT modes.
EVENT_INFERENCE_DETAILS: Final = "gen_ai.client.inference.operation.details"
EVENT_RETRY: Final = "nons.retry"
EVENT_FALLBACK: Final = "nons.fallback"
RETRY_ATTEMPT: Final = "nons.retry.attempt"
RETRY_DELAY_S: Final = "nons.retry.delay_s"
RETRY_SERVER_HINT_S: Final = "nons.retry.server_hint_s"
FALLBACK_FROM: Final = "nons.fallback.from_model"
FALLBACK_TO: Final = "nons.fallback.to_model"
FALLBACK_REASON: Final = "nons.fallback.reason"
#: On the ``chat`` span of a call that sends a typed answer's parse or schema error back to the model.
EVENT_OUTPUT_REPAIR: Final = "nons.output_repair"
OUTPUT_REPAIR_NUMBER: Final = "nons.output_repair.number"  # 1 for the first repair of an answer
OUTPUT_REPAIR_REASON: Final = "nons.output_repair.reason"  # one of the OUTPUT_REPAIR_REASONS
OUTPUT_REPAIR_ERROR: Final = "nons.output_repair.error"  # the error sent back; recorded only with content capture
REPAIR_INVALID_JSON: Final = "invalid_json"  # no JSON object in the answer
REPAIR_SCHEMA_MISMATCH: Final = "schema_mismatch"  # a JSON object that does not follow the schema
REPAIR_TRUNCATED: Final = "truncated"  # the answer hit the token limit before its JSON was complete
OUTPUT_REPAIR_REASONS: Final = (REPAIR_INVALID_JSON, REPAIR_SCHEMA_MISMATCH, REPAIR_TRUNCATED)

# --- metrics: (name, unit) --------------------------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_COST: Final = "nons.cost"
METRIC_UNPRICED_CALLS: Final = "nons.calls.unpriced"
METRIC_RETRIES: Final = "nons.retries"
METRIC_FALLBACKS: Final = "nons.fallbacks"
METRIC_NODE_DURATION: Final = "nons.node.duration"
METRIC_NETWORK_DURATION: Final = "nons.network.duration"
METRIC_NETWORK_ACTIVE: Final = "nons.network.active"
METRIC_SCHEDULER_WAIT: Final = "nons.scheduler.wait"
METRIC_QUEUE_SIZE: Final = "nons.scheduler.queue.size"
METRIC_IN_FLIGHT: Final = "nons.scheduler.in_flight"
METRIC_THROTTLED: Final = "nons.rate_limit.throttled"
#: Attempts the scheduler refused before anything was sent (breaker open, queue deadline, a paused provider):
#: not operations, so not in gen_ai.client.operation.duration, whose percentiles they would pull towards 0.
METRIC_REJECTED: Final = "nons.scheduler.rejected"
METRIC_BREAKER_STATE: Final = "nons.circuit_breaker.state"
METRIC_TOOL_CALLS: Final = "nons.tool.calls"
METRIC_WORKFLOW_DURATION: Final = "gen_ai.workflow.duration"
METRIC_INVOKE_AGENT_DURATION: Final = "gen_ai.invoke_agent.duration"
METRIC_EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
METRIC_CACHE_HITS: Final = "nons.cache.hits"
METRIC_CACHE_MISSES: Final = "nons.cache.misses"
#: USD that cached answers saved: what their calls would have cost.
METRIC_COST_SAVED: Final = "nons.cost.saved"
#: USD settled against budgets (the real cost of the calls they admitted), by budget name and scope.
METRIC_BUDGET_SPENT: Final = "nons.budget.spent"
#: Calls refused because a budget could not hold their worst case.
METRIC_BUDGET_REFUSED: Final = "nons.budget.refused"
#: The share of each budget used in its current window (reserved and spent / limit), as this process last saw it.
METRIC_BUDGET_USAGE: Final = "nons.budget.usage"
#: Seconds spent with the shared Redis unreachable (on local limits, cache and budgets); observable counter.
METRIC_REDIS_DEGRADED: Final = "nons.redis.degraded"

# --- the HTTP service (nons serve) --------------------------------------------------------------------------
#: Requests the service refused before running a network, by reason (a counter).
METRIC_SERVE_REFUSALS: Final = "nons.serve.refusals"
REFUSAL_REASON: Final = "nons.refusal.reason"
REFUSAL_UNAUTHORIZED: Final = "unauthorized"
REFUSAL_RATE_LIMITED: Final = "rate_limited"
REFUSAL_SPEND_LIMITED: Final = "spend_limited"
REFUSAL_INVALID_INPUT: Final = "invalid_input"
REFUSAL_BODY_TOO_LARGE: Final = "body_too_large"
REFUSAL_BODY_TIMEOUT: Final = "body_timeout"
REFUSAL_UNKNOWN_NETWORK: Final = "unknown_network"
REFUSAL_DRAINING: Final = "draining"
REFUSAL_LIMITS_UNAVAILABLE: Final = "limits_unavailable"
METRIC_OUTPUT_REPAIRS: Final = "nons.output.repairs"
#: An observable gauge that observes nothing (so it is never exported): its callback records NoN's queued
#: measurements when a reader collects (:mod:`nons.observability.deferred`).
METRIC_DEFERRED_RECORDER: Final = "nons.internal.deferred_recorder"

UNIT_SECONDS: Final = "s"
UNIT_TOKENS: Final = "{token}"
UNIT_USD: Final = "USD"

# The GenAI conventions' advisory boundaries.
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: The boundaries of NoN's own durations (nons.node.duration, nons.network.duration, nons.scheduler.wait): the
#: conventions' doubling steps, on to almost three hours. A node waits out its calls' retries and a pass its
#: layers, and a call may queue up to NON_REQUEST_TIMEOUT (300 s by default): with the conventions' last boundary,
#: 81.92 s, every percentile above it would read 81.92.
LONG_DURATION_BUCKETS: Final = (
    *DURATION_BUCKETS, 163.84, 327.68, 655.36, 1310.72, 2621.44, 5242.88, 10485.76,
)
#: gen_ai.workflow.duration's boundaries: a workflow may run for up to two hours.
WORKFLOW_DURATION_BUCKETS: Final = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
#: gen_ai.invoke_agent.duration's boundaries.
AGENT_DURATION_BUCKETS: Final = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)
#: gen_ai.execute_tool.duration uses DURATION_BUCKETS, as gen_ai.client.operation.duration does.
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
