"""Every telemetry name NoN emits: span names, attribute keys, event names, metric names and their units.

This is the one place where names are spelled. GenAI names come from ``opentelemetry-semantic-conventions``
where it has them, so a rename upstream touches this file only. ``../shared/design.md`` section 5 is the
contract these names implement.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _genai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _genai_metrics
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import server_attributes as _server

# --- instrumentation scope -------------------------------------------------------------------------------
SCOPE: Final = "nons"

# --- standard switches ------------------------------------------------------------------------------------
#: The GenAI conventions' variable that turns on recording of prompt, completion and tool text.
ENV_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# --- provider names ---------------------------------------------------------------------------------------
#: ``gen_ai.provider.name`` of each provider, keyed by ``ModelProvider`` value. Kept here, not read from the
#: provider classes, so that labelling a metric or a span never imports a vendor SDK.
PROVIDER_NAMES: Final = {
    "anthropic": _genai.GenAiProviderNameValues.ANTHROPIC.value,  # "anthropic"
    "openai": _genai.GenAiProviderNameValues.OPENAI.value,  # "openai"
    "google": _genai.GenAiProviderNameValues.GCP_GEMINI.value,  # "gcp.gemini"
    "mock": "nons.simulated",  # not a real system: the simulated provider says so in every signal
}


def genai_provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` of a ``ModelProvider`` (or its value); unknown values pass through."""
    key = str(provider)
    return PROVIDER_NAMES.get(key, key)


# --- span names (formatted with the subject) --------------------------------------------------------------
OP_WORKFLOW: Final = _genai.GenAiOperationNameValues.INVOKE_WORKFLOW.value  # "invoke_workflow"
OP_CHAT: Final = _genai.GenAiOperationNameValues.CHAT.value  # "chat"
OP_INVOKE_AGENT: Final = _genai.GenAiOperationNameValues.INVOKE_AGENT.value
OP_EXECUTE_TOOL: Final = _genai.GenAiOperationNameValues.EXECUTE_TOOL.value


def network_span_name(network: str) -> str:
    return f"{OP_WORKFLOW} {network}"


def layer_span_name(index: int) -> str:
    return f"nons.layer {index}"


def node_span_name(operator: str) -> str:
    return f"nons.node {operator}"


def llm_span_name(model: str) -> str:
    return f"{OP_CHAT} {model}"


def agent_span_name(agent: str) -> str:
    return f"{OP_INVOKE_AGENT} {agent}"


def tool_span_name(tool: str) -> str:
    return f"{OP_EXECUTE_TOOL} {tool}"


# --- GenAI attributes (semantic conventions) -------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = _genai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = _genai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL: Final = _genai.GEN_AI_REQUEST_MODEL
GEN_AI_RESPONSE_MODEL: Final = _genai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_ID: Final = _genai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_FINISH_REASONS: Final = _genai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_REQUEST_TEMPERATURE: Final = _genai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_MAX_TOKENS: Final = _genai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TOP_P: Final = _genai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_STOP_SEQUENCES: Final = _genai.GEN_AI_REQUEST_STOP_SEQUENCES
GEN_AI_USAGE_INPUT_TOKENS: Final = _genai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = _genai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = _genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _genai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
GEN_AI_TOKEN_TYPE: Final = _genai.GEN_AI_TOKEN_TYPE
GEN_AI_AGENT_NAME: Final = _genai.GEN_AI_AGENT_NAME
GEN_AI_AGENT_ID: Final = _genai.GEN_AI_AGENT_ID
GEN_AI_TOOL_NAME: Final = _genai.GEN_AI_TOOL_NAME
GEN_AI_TOOL_CALL_ID: Final = _genai.GEN_AI_TOOL_CALL_ID
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
# No released convention for cost yet; OpenLIT and LiteLLM use this name, in USD.
GEN_AI_USAGE_COST: Final = "gen_ai.usage.cost"
TOKEN_TYPE_INPUT: Final = _genai.GenAiTokenTypeValues.INPUT.value
TOKEN_TYPE_OUTPUT: Final = _genai.GenAiTokenTypeValues.OUTPUT.value
GEN_AI_TOOL_TYPE: Final = _genai.GEN_AI_TOOL_TYPE
GEN_AI_TOOL_DESCRIPTION: Final = _genai.GEN_AI_TOOL_DESCRIPTION
GEN_AI_TOOL_CALL_ARGUMENTS: Final = _genai.GEN_AI_TOOL_CALL_ARGUMENTS  # recorded only when content capture is on
GEN_AI_TOOL_CALL_RESULT: Final = _genai.GEN_AI_TOOL_CALL_RESULT  # recorded only when content capture is on
GEN_AI_CONVERSATION_ID: Final = _genai.GEN_AI_CONVERSATION_ID
TOOL_TYPE_FUNCTION: Final = "function"  # the conventions' value for a tool that runs in the client

ERROR_TYPE: Final = _error.ERROR_TYPE
SERVER_ADDRESS: Final = _server.SERVER_ADDRESS

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
ROLLUP_LLM_CALLS: Final = "nons.llm_calls"
AGENT_STEPS: Final = "nons.agent.steps"
# The value of gen_ai.tool.name on the tool-call counter for a tool the model made up (kept out of the metric's
# labels: a model can invent any number of names).
TOOL_NAME_UNREGISTERED: Final = "_unregistered"

OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"

# --- span events ------------------------------------------------------------------------------------------
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
METRIC_OPERATION_DURATION: Final = _genai_metrics.GEN_AI_CLIENT_OPERATION_DURATION
METRIC_TOKEN_USAGE: Final = _genai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
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
METRIC_BREAKER_STATE: Final = "nons.circuit_breaker.state"
METRIC_TOOL_CALLS: Final = "nons.tool.calls"
METRIC_OUTPUT_REPAIRS: Final = "nons.output.repairs"

UNIT_SECONDS: Final = "s"
UNIT_TOKENS: Final = "{token}"
UNIT_USD: Final = "USD"

# The GenAI conventions' advisory boundaries.
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
