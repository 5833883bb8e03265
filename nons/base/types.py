"""The configuration types and enums of the public API: providers, error policies, model/layer/network configs.

A leaf module: it imports nothing else from NoN but how its configs are checked (:mod:`nons.base.checked`).
``nons.core.types`` re-exports it with the results and errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from nons.base.checked import CheckedConfig, config_dict

if TYPE_CHECKING:  # the annotations' names, which nons.base.checked gives pydantic at the first instance
    from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

__all__ = [
    "Budget",
    "BudgetScope",
    "CacheConfig",
    "ErrorPolicy",
    "LayerConfig",
    "ModelConfig",
    "ModelProvider",
    "NetworkConfig",
    "StructuredOutput",
]


class ModelProvider(str, Enum):
    """Where a node's LLM calls go. ``MOCK`` is the simulated provider."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"
    MOCK = "mock"

    def __str__(self) -> str:
        return self.value


class ErrorPolicy(str, Enum):
    """What a layer does when a node fails. See the README's error policy table."""

    FAIL_FAST = "fail_fast"
    RETRY_WITH_BACKOFF = "retry_with_backoff"
    SKIP_AND_CONTINUE = "skip_and_continue"
    FALLBACK_MODEL = "fallback_model"
    RETURN_PARTIAL = "return_partial"

    def __str__(self) -> str:
        return self.value


class StructuredOutput(str, Enum):
    """How a typed answer (``classify``, ``extract``, an agent's output schema, ...) is asked of the model.

    ``AUTO`` uses each vendor's native structured output: OpenAI's ``response_format`` ``json_schema`` (strict
    where the schema allows), Gemini's response schema, Anthropic's output format. Against an OpenAI-compatible
    server (``base_url`` set) it starts with ``json_schema``; a server that refuses it (HTTP 400) is asked again
    with ``json_object`` and a schema, then with the prompt only, and the first form it accepts is remembered for
    its base URL. The other values pin one form:

    - ``JSON_SCHEMA``: ``response_format`` ``{"type": "json_schema", ...}`` (OpenAI's own format);
    - ``JSON_OBJECT``: ``{"type": "json_object", "schema": ...}`` as llama.cpp, vLLM and Ollama read it (a server
      that ignores the schema still answers JSON), with the schema in the prompt too; for Gemini the JSON MIME
      type without a schema; Anthropic has no JSON mode, so it gets the prompt only;
    - ``PROMPT``: no native field; the schema is an instruction in the system prompt.
    """

    AUTO = "auto"
    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"
    PROMPT = "prompt"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, weakref_slot=True, kw_only=True, repr=False)
class ModelConfig(CheckedConfig):
    """Which model a node calls and how.

    ``provider`` and ``model_name`` may be left out: the provider is then ``NON_DEFAULT_PROVIDER``, else the vendor
    whose model ``model_name`` is (``gpt-*`` is OpenAI's), else the first one with an API key, and the model is
    that provider's default. The simulated provider answers only when it is named or given one of its own model
    names (or when nothing is named and no key is set); a vendor's model never gets a simulated answer.
    ``fallbacks`` are tried in order under ``ErrorPolicy.FALLBACK_MODEL``, across providers too.

    ``price_provider`` is the genai-prices provider id whose prices the calls are billed at (``"openai"`` for a
    gateway that forwards to OpenAI). Unset, the provider is recognised from the API's URL: the vendor's public
    API, or a known OpenAI-compatible service; a server genai-prices does not know leaves the calls unpriced
    (counted in ``nons.calls.unpriced``), never charged another vendor's prices.

    Typed answers: ``structured_output`` picks how the schema is sent (see :class:`StructuredOutput`);
    ``output_repairs`` is how many times an answer that does not parse or follow the schema is sent back to the
    model with the error before the call fails with ``OutputParseError`` (unset: ``NON_OUTPUT_REPAIRS``, 1).

    A frozen dataclass whose fields pydantic checks (see :mod:`nons.base.checked`): a value that does not fit is a
    ``pydantic.ValidationError``; ``dataclasses.replace(config, temperature=0)`` is a checked copy.
    """

    # hide_input_in_errors: a refused value is not quoted back (a base URL may carry a gateway's password, a key
    # may be given to the wrong field); each validator's own message says what is wrong.
    _check_config: ClassVar[dict[str, Any]] = {"hide_input_in_errors": True}

    provider: Annotated[ModelProvider | None, BeforeValidator(_known_provider)] = None
    model_name: Annotated[str | None, AfterValidator(_non_empty_model)] = None
    # No NaN: it fails the bounds with a message about the bound ("less than or equal to 2"), not about the value.
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = None
    max_tokens: Annotated[int | None, Field(gt=0)] = None
    top_p: Annotated[float | None, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = None
    stop: Annotated[tuple[str, ...] | None, BeforeValidator(_stop_as_tuple)] = None
    base_url: Annotated[str | None, AfterValidator(_an_http_base_url)] = None
    price_provider: str | None = None
    api_key: SecretStr | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)
    fallbacks: Annotated[tuple[ModelConfig, ...], BeforeValidator(_list_as_tuple)] = ()
    structured_output: Annotated[StructuredOutput, BeforeValidator(_known_structured_output)] = StructuredOutput.AUTO
    output_repairs: Annotated[int | None, Field(ge=0, le=10)] = None

    def __repr__(self) -> str:
        # repr() and str() end up in logs and error reports: a base URL's user, password and query may be a
        # gateway's credentials, and so may an extra parameter such as extra_headers. The key is never shown.
        from nons.base.redaction import displayable_url, hide_credential_params  # not needed at import

        shown = []
        for name, value in config_dict(self).items():
            if name == "base_url" and value is not None:
                value = displayable_url(value)
            elif name == "extra_params":
                value = hide_credential_params(value)
            elif name == "api_key":
                continue
            shown.append(f"{name}={value!r}")
        return f"ModelConfig({', '.join(shown)})"


def _member_of(kind: type[Enum], field_name: str, listed_as: str) -> Callable[[object], object]:
    """A validator that takes a member of ``kind`` or its value in any case, and names the known values else."""

    def member(value: object) -> object:
        if isinstance(value, str) and not isinstance(value, kind):
            try:
                return kind(value.lower())
            except ValueError:
                known = ", ".join(m.value for m in kind)
                raise ValueError(f"unknown {field_name} {value!r}; {listed_as}: {known}") from None
        return value

    return member


_known_provider = _member_of(ModelProvider, "provider", "known providers")
_known_structured_output = _member_of(StructuredOutput, "structured_output", "known values")


def _an_http_base_url(value: str | None) -> str | None:
    return check_base_url(value, "base_url")


def _non_empty_model(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("model_name must not be empty")
    return value


def _stop_as_tuple(value: object) -> object:
    if isinstance(value, str):
        return (value,)
    return _list_as_tuple(value)


def _list_as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def check_base_url(value: str | None, name: str) -> str | None:
    """``value`` when it is an ``http://`` or ``https://`` URL with a host (or ``None``); else ``ValueError``
    naming ``name``. Caught here, a URL without its scheme (``localhost:11434/v1``) is a configuration error
    when the config is made, not a connection error retried at every call."""
    if value is None:
        return None
    # A variable read from a secret file often ends in a newline: surrounding whitespace is not part of the URL.
    value = value.strip()
    # Imported here: neither is needed to import ModelConfig (see nons.base.errors on redaction's cost).
    from urllib.parse import urlsplit

    from nons.base.redaction import displayable_url

    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - read for its ValueError: a port out of range, or not a number
    except ValueError:  # "http://[::1": an IPv6 host left open; "http://host:99999"
        host, parts = None, None
    # Whitespace or a control character inside: urlsplit lets them by, and the SDKs fail on them at every call.
    inside = any(ord(char) < 0x21 for char in value)
    if parts is None or parts.scheme not in ("http", "https") or not host or inside:
        raise ValueError(
            f"{name} must be an http:// or https:// URL with a host (and a port from 1 to 65535, if any, and no "
            f"spaces), such as 'http://localhost:11434/v1'; got {displayable_url(value)!r}"
        )
    return value


@dataclass(frozen=True, slots=True, weakref_slot=True, kw_only=True)
class LayerConfig(CheckedConfig):
    """How a layer runs its nodes and reacts to failures.

    Retries wait ``min(retry_max_delay, retry_base_delay * retry_multiplier ** attempt)`` seconds with full
    jitter, or the server's retry hint when it is longer.
    """

    # No inf or NaN: an infinite retry delay waits for ever, and NaN passes no bound check usefully.
    _check_config: ClassVar[dict[str, Any]] = {"allow_inf_nan": False}

    error_policy: ErrorPolicy = ErrorPolicy.FAIL_FAST
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    timeout_seconds: Annotated[float | None, Field(gt=0)] = None
    min_success_threshold: Annotated[
        float | None,
        Field(
            ge=0.0,
            le=1.0,
            description="Share of nodes that must succeed for the layer to continue without the failed ones. "
            "Unset: SKIP_AND_CONTINUE needs one success, RETRY_WITH_BACKOFF and FALLBACK_MODEL need all.",
        ),
    ] = None
    retry_base_delay: Annotated[float, Field(ge=0.0)] = 0.5
    retry_multiplier: Annotated[float, Field(ge=1.0)] = 2.0
    retry_max_delay: Annotated[float, Field(ge=0.0)] = 30.0

    @staticmethod
    def _check_whole(config: Any) -> None:
        """``ValueError`` for a threshold beside a policy that never applies it."""
        # FAIL_FAST raises at the first failed node, RETURN_PARTIAL never fails the layer: a threshold beside
        # either was accepted and never applied.
        ignoring = (ErrorPolicy.FAIL_FAST, ErrorPolicy.RETURN_PARTIAL)
        if config.min_success_threshold is not None and config.error_policy in ignoring:
            raise ValueError(
                "min_success_threshold applies to SKIP_AND_CONTINUE, RETRY_WITH_BACKOFF and FALLBACK_MODEL, not to "
                f"{config.error_policy.name} (FAIL_FAST, the default, fails the layer at its first failed node; "
                "RETURN_PARTIAL never fails it)"
            )


class BudgetScope(str, Enum):
    """What a budget counts: one forward ``pass``, a ``network`` (by name, across passes and replicas), a
    ``caller`` (see ``nons.spending_for``, across replicas), or this ``process``."""

    PASS = "pass"
    NETWORK = "network"
    CALLER = "caller"
    PROCESS = "process"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, weakref_slot=True, kw_only=True)
class Budget(CheckedConfig):
    """A spending limit in USD, checked before every LLM call (see ``nons.core.budgets``).

    ``window_s`` makes the limit apply to a window that starts with the first spend and lasts that many
    seconds (then starts again); unset, it never resets. A pass budget lasts one pass.
    """

    usd: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    per: BudgetScope = BudgetScope.PASS
    window_s: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None
    name: Annotated[str, Field(description="Shown in errors and telemetry; default: the scope.")] = ""

    @property
    def label(self) -> str:
        return self.name or self.per.value


def check_budget_names(budgets: Sequence[Budget], where: str) -> None:
    """``ValueError`` for two budgets of one scope with one name (``where`` says whose they are). They would be
    counted as one, each charged every call, and told apart by no error, metric or gauge."""
    seen: set[tuple[BudgetScope, str]] = set()
    for budget in budgets:
        if (budget.per, budget.label) in seen:
            raise ValueError(
                f"{where} has two {budget.per.value} budgets named {budget.label!r}: give each its own name, "
                f"e.g. Budget(usd=..., per={budget.per.value!r}, window_s=3600, name='hourly')"
            )
        seen.add((budget.per, budget.label))


@dataclass(frozen=True, slots=True, weakref_slot=True, kw_only=True)
class CacheConfig(CheckedConfig):
    """Whether and how a node's LLM answers are cached (see ``nons.core.cache``).

    Caching is off by default. ``enabled=True`` caches calls at temperature 0 (a provider default is not
    assumed to be 0); ``any_temperature=True`` also caches sampled answers, for callers who accept one sample
    reused.
    """

    enabled: bool = True
    any_temperature: bool = False
    ttl_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 3600.0


@dataclass(frozen=True, slots=True, weakref_slot=True, kw_only=True)
class NetworkConfig(CheckedConfig):
    """Settings of a whole network: its name (used in telemetry), timeout and input limit, budgets and whether
    its nodes' answers are cached (a node's own ``cache`` wins)."""

    # Not empty, and valid text: checked when the network is made (nons.core.inputs.check_name), which says so
    # in a ConfigurationError (a length constraint here made pydantic refuse a lone surrogate in its own words).
    name: Annotated[str, Field(description="The network's name in its spans and metrics.")] = "network"
    timeout_seconds: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None
    max_input_chars: Annotated[int | None, Field(gt=0, description="Overrides NON_MAX_INPUT_CHARS.")] = None
    default_layer_config: LayerConfig | None = None
    budgets: Annotated[tuple[Budget, ...], BeforeValidator(_list_as_tuple), AfterValidator(_budget_names)] = ()
    cache: CacheConfig | None = None


def _budget_names(budgets: tuple[Budget, ...]) -> tuple[Budget, ...]:
    check_budget_names(budgets, "NetworkConfig(budgets=...)")
    return budgets
