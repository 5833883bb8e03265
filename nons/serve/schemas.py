"""The bodies the service takes and returns, as pydantic models (and so in its OpenAPI document)."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from nons.base.redaction import encodable

__all__ = [
    "ErrorBody",
    "Health",
    "NetworkList",
    "Readiness",
    "RunResponse",
    "UsageBody",
    "Violation",
    "jsonable_output",
    "run_request_model",
]

#: An input must hold a character that is not whitespace (JSON Schema patterns match anywhere).
NOT_BLANK = r"\S"


def run_request_model(max_input_chars: int) -> type[BaseModel]:
    """The body of ``POST /v1/networks/{name}/run``, with the input rules of the deployment guide: at most
    ``max_input_chars`` characters, not empty or whitespace, and trimmed before it reaches the network."""
    text = Annotated[
        str,
        Field(
            max_length=max_input_chars,
            pattern=NOT_BLANK,
            description=f"The network's input: at most {max_input_chars:,} characters, not blank. Leading and "
            "trailing whitespace is removed.",
            examples=["What is the capital of France?"],
        ),
        AfterValidator(str.strip),
    ]
    model: type[BaseModel] = create_model(
        "RunRequest", __config__=ConfigDict(extra="forbid"), input=(text, ...)
    )
    return model


class UsageBody(BaseModel):
    """Tokens of every LLM call of the pass."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    unreported_calls: int = Field(
        description="Calls whose server reported no usage: their tokens are unknown, so not in these counts (and "
        "their cost is unknown: they are in unpriced_calls too)."
    )


class RunResponse(BaseModel):
    """What one pass of a network produced."""

    network: str
    output: Any = Field(description="The last layer's output, as JSON (structured results as objects).")
    cost_usd: float = Field(description="Known cost of the pass in USD; see unpriced_calls.")
    unpriced_calls: int = Field(description="Calls whose price is unknown (their cost is not in cost_usd).")
    llm_calls: int = Field(
        description="LLM calls of the pass that answered, or were billed for answers that could not be used (a "
        "refusal): the calls cost_usd and usage count."
    )
    usage: UsageBody
    duration_s: float
    trace_id: str | None = Field(description="The pass's trace (the caller's, when it sent a traceparent).")


class Violation(BaseModel):
    """One input rule a request broke."""

    field: str
    rule: str = Field(description="max_length, not_empty, required, type, unknown_field or json.")
    message: str


class ErrorBody(BaseModel):
    """Why a request was refused or failed. ``error`` is a stable code; ``detail`` is for people."""

    error: str
    detail: str
    violations: list[Violation] = Field(default_factory=list)
    trace_id: str | None = None


class Health(BaseModel):
    status: str = Field(description="'ok' while the process serves.")


class Readiness(BaseModel):
    """Whether this replica should get traffic, and the scheduler's state."""

    ready: bool
    draining: bool
    scheduler_running: bool
    queue_size: int = Field(description="LLM requests waiting in the scheduler.")
    in_flight_calls: int = Field(description="LLM calls running at the providers.")
    in_flight_requests: int = Field(description="Network runs this replica is serving.")
    open_breakers: list[str] = Field(description="provider/model circuit breakers that are open or half-open.")
    paused: dict[str, float] = Field(description="Providers paused by a server retry hint: seconds left.")


class NetworkList(BaseModel):
    networks: list[dict[str, Any]] = Field(description="Each network's name, description and structure.")


def jsonable_output(value: Any) -> Any:
    """A network output as JSON data: typed results (dataclasses) as objects, lists and dicts recursively; text
    that UTF-8 can encode (a model's answer may end in half an emoji: a lone surrogate becomes U+FFFD)."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {encodable(str(k)): jsonable_output(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable_output(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable_output(asdict(value))
    if isinstance(value, BaseModel):
        return jsonable_output(value.model_dump(mode="json"))
    return encodable(str(value))
