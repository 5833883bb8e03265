"""Settings from ``NON_*`` environment variables and an optional ``.env`` file.

Settings are read when they are used (:func:`get_settings` builds a fresh object), never frozen at import,
so a process that changes its environment, or a test that patches it, sees the change on the next pass.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nons.base.errors import ConfigurationError
from nons.base.keys import read_key
from nons.base.types import ErrorPolicy, ModelProvider, check_base_url

__all__ = ["Settings", "apply_log_level", "describe_validation_error", "get_settings", "key_variable"]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Every setting NoN reads, with its ``NON_*`` variable (or the vendor's own name for API keys)."""

    model_config = SettingsConfigDict(
        env_prefix="NON_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        # Every number is finite: "inf" and "1e400" are refused when read, not at the first call they break.
        allow_inf_nan=False,
        # A refused value is not quoted back: it may be a key, or a base URL with a gateway's password in it.
        hide_input_in_errors=True,
    )

    environment: str = Field(default="development", description="Becomes the resource's deployment.environment.name.")
    debug: bool = False
    log_level: LogLevel = "INFO"

    enable_tracing: bool = True
    enable_metrics: bool = True
    observability_buffer_size: int = Field(
        default=10_000, gt=0, le=10_000_000,
        description="Spans kept in memory for get_observability(); older ones are dropped."
    )
    telemetry_exit_timeout: float = Field(
        default=1.5,
        ge=0,
        le=600,
        description="Seconds the process's exit (and SIGTERM) may wait for the last telemetry to be exported; "
        "what is not out by then is dropped. Longer delivers more through a slow collector. With the "
        "interpreter's own teardown of an exporter still retrying, the default keeps exit within 2 s.",
    )
    span_export: Literal["nons", "sdk", "fastotel"] = Field(
        default="nons",
        description="Who sends spans to an OTLP collector. nons: the SDK's batch processor and OTLP exporter, "
        "with each batch encoded by NoN (the bytes the current SDK's encoder makes, in a fifth of its time; over "
        "gRPC, parsed into the request). sdk: the SDK's processor and exporter as they come. "
        "fastotel: fastotel's processor (pip install 'nons[fastotel]'), which batches, encodes and sends them "
        "in native code, off the GIL; it speaks OTLP over HTTP only, so it needs http/protobuf as the traces "
        "protocol. Pre-alpha upstream. Metrics and logs keep the SDK's exporters in every case.",
    )
    telemetry_sigterm_handler: bool = Field(
        default=True,
        description="Flush telemetry on SIGTERM, then hand the signal on to the application's handler (or "
        "end the process as SIGTERM would). False installs no signal handler.",
    )

    error_policy: ErrorPolicy = Field(
        default=ErrorPolicy.FAIL_FAST, description="Default error policy of layers that do not set one."
    )
    max_retries: int = Field(default=3, ge=0, le=100, description="Default retries per call under RETRY_WITH_BACKOFF.")

    max_concurrent_requests: int = Field(
        default=100, gt=0, le=1_000_000,
        description="Default in-flight calls per provider.",
    )
    requests_per_minute: float | None = Field(
        default=None, gt=0, le=100_000_000, description="Default request rate per provider; unset means no rate limit."
    )
    request_timeout: float = Field(
        default=300.0, gt=0, le=86_400,
        description="Seconds one LLM request may take, queueing included (at most a day)."
    )

    max_retry_hint: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="Longest server retry hint (Retry-After) worth waiting for, in seconds. A longer one pauses "
        "the provider for the hint, and calls to it fail at once with a RateLimitError carrying the time left.",
    )

    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis that replicas share (scheduler limits, response cache, budgets); unset means in process.",
    )
    redis_timeout: float = Field(
        default=0.5, gt=0, le=10, description="Seconds a Redis operation may take before Redis counts as unreachable."
    )
    redis_local_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of each shared limit and budget a replica uses while Redis is unreachable; "
        "unset means 1 / the number of replicas last seen in Redis.",
    )

    max_input_chars: int = Field(
        default=50_000, gt=0, le=1_000_000_000,
        description="Largest input that forward() accepts.",
    )
    output_repairs: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Times a typed answer that fails to parse or to follow its schema is sent back to the model "
        "with the error, before OutputParseError (ModelConfig.output_repairs overrides it).",
    )
    default_provider: ModelProvider | None = Field(
        default=None, description="Provider of nodes that name none; unset means the first one with an API key."
    )
    prices_auto_update: bool = Field(
        default=False,
        description="Refresh genai-prices' price data from the network once an hour (off: bundled prices)."
    )
    prices_update_url: str | None = Field(
        default=None, description="Where the price refresh fetches from; unset means genai-prices' default source."
    )

    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "NON_ANTHROPIC_API_KEY")
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "NON_OPENAI_API_KEY")
    )
    google_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GOOGLE_API_KEY", "GEMINI_API_KEY", "NON_GOOGLE_API_KEY")
    )

    # The vendors' own variables for their API's address (a gateway, a proxy, an emulator in tests).
    anthropic_base_url: str | None = Field(default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL"))
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    google_base_url: str | None = Field(default=None, validation_alias=AliasChoices("GOOGLE_GEMINI_BASE_URL"))

    @field_validator("anthropic_base_url", "openai_base_url", "google_base_url")
    @classmethod
    def _an_http_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_base_url(value, _variable(info.field_name or ""))

    @field_validator("anthropic_api_key", "openai_api_key", "google_api_key", mode="before")
    @classmethod
    def _stripped_key(cls, value: Any, info: ValidationInfo) -> Any:
        # Stripped, registered for redaction, and said once, where the key is read (see nons.base.keys).
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return read_key(value, key_variable(info.field_name or ""))
        return value

    def api_key_for(self, provider: ModelProvider) -> SecretStr | None:
        """The configured key of ``provider`` (``None`` for the simulated provider)."""
        if provider is ModelProvider.ANTHROPIC:
            return self.anthropic_api_key
        if provider is ModelProvider.OPENAI:
            return self.openai_api_key
        if provider is ModelProvider.GOOGLE:
            return self.google_api_key
        return None


_ENV_NAMES = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "GOOGLE_GEMINI_BASE_URL",
)
_cached: tuple[object, Settings] | None = None
_KEY_FIELDS = frozenset({"anthropic_api_key", "openai_api_key", "google_api_key"})
#: The longest refused value an error quotes (a key is longer).
_SHOWN_CHARS = 16


def key_variable(field: str) -> str:
    """The environment variable the key of settings field ``field`` came from: the first of its names that is
    set (``GEMINI_API_KEY`` for a Google key set so), else its main name (a key from ``.env``)."""
    alias = Settings.model_fields[field].validation_alias
    names = [str(choice) for choice in alias.choices] if isinstance(alias, AliasChoices) else []
    for name in names:
        if os.environ.get(name):
            return name
    return names[0] if names else f"NON_{field.upper()}"


def _variable(field: str) -> str:
    if field in _KEY_FIELDS:
        return key_variable(field)
    alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"NON_{field.upper()}"


def describe_validation_error(error: ValidationError) -> str:
    """What is wrong, one line per variable: its name, its value and pydantic's reason. The value is never a
    key's; a URL's is shown without its user and password; any other is shown only when it is short (a typo in a
    number, a level): a long one may be a key set in the wrong variable."""
    from nons.base.redaction import displayable_url, redact

    lines = []
    for problem in error.errors(include_url=False):
        loc = problem.get("loc") or ("",)
        field = str(loc[0])
        field = next((name for name in Settings.model_fields if _variable(name).lower() == field.lower()), field)
        value = problem.get("input")
        if field in _KEY_FIELDS:
            shown = ""
        elif field.endswith("_base_url") and isinstance(value, str):
            shown = f"={displayable_url(value)!r}"
        elif isinstance(value, str) and len(value) > _SHOWN_CHARS:
            shown = f" (a {len(value)}-character value, not shown)"
        else:
            shown = f"={redact(repr(value))}"
        lines.append(f"{_variable(field)}{shown} ({field}): {redact(str(problem.get('msg')))}")
    return "; ".join(lines)


_env_seen: dict[Any, Any] | None = None
_env_key: tuple[tuple[str, str], ...] = ()


def _env_fingerprint() -> tuple[tuple[str, str], ...]:
    """The NON_* and key variables, recomputed only when the environment changed since the last call.

    Walking ``os.environ`` costs ~40 µs a pass (every item is decoded); comparing CPython's raw dict behind it
    with a copy is one C-level dict comparison (~0.4 µs). Elsewhere (no ``_data``) every call walks it.
    """
    global _env_seen, _env_key
    raw = getattr(os.environ, "_data", None)
    if raw is not None and raw == _env_seen:
        return _env_key
    # The copy first, then the key from the copy: a variable set by another thread in between then shows as a
    # change at the next call, instead of a key that is older than the copy it is checked against.
    seen = dict(raw) if isinstance(raw, dict) else None
    items = ((os.fsdecode(k), os.fsdecode(v)) for k, v in seen.items()) if seen is not None else os.environ.items()
    key = tuple(sorted((k, v) for k, v in items if k.upper().startswith("NON_") or k in _ENV_NAMES))
    _env_seen, _env_key = seen, key
    return key


def _fingerprint() -> object:
    # What Settings() would read: every NON_* variable, the key variables, and the .env file's identity.
    env = _env_fingerprint()
    try:
        stat = os.stat(".env")
        dotenv: object = (os.getcwd(), stat.st_mtime_ns, stat.st_size)
    except OSError:
        dotenv = None
    return env, dotenv


def get_settings() -> Settings:
    """The settings as the environment and ``.env`` say now.

    Building ``Settings`` costs about a millisecond, so the result is reused for as long as the variables and
    the ``.env`` file it was read from stay the same: a change is seen on the next call.
    """
    global _cached
    key = _fingerprint()
    cached = _cached
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        settings = Settings()
    except ValidationError as error:
        # One error type for every bad configuration, naming each variable and its value (never a key).
        raise ConfigurationError(f"invalid NoN settings: {describe_validation_error(error)}") from None
    _cached = (key, settings)
    return settings


def apply_log_level(settings: Settings | None = None, *, only_if_set: bool = False) -> None:
    """Set the ``nons`` logger's level from ``NON_LOG_LEVEL`` (``DEBUG`` when ``NON_DEBUG`` is true).

    A library leaves logging to its application: telemetry's set-up (``only_if_set``) sets the level only when
    ``NON_LOG_LEVEL`` is set or ``NON_DEBUG`` is true, and otherwise leaves the application's level alone;
    the ``nons`` CLI, which is the application, always sets it. Handlers and the root logger are left alone.
    """
    import logging

    settings = settings or get_settings()
    if only_if_set and "log_level" not in settings.model_fields_set and not settings.debug:
        return
    logging.getLogger("nons").setLevel("DEBUG" if settings.debug else settings.log_level)
