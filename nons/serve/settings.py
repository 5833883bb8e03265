"""Settings of ``nons serve``, from ``NON_SERVE_*`` variables (and a ``.env`` file); command-line options win."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CUT_RUNS_SETTLE_S", "KUBERNETES_GRACE_S", "SCHEDULER_STOP_S", "ServeSettings", "describe_settings_error"]

#: Kubernetes' default ``terminationGracePeriodSeconds``: drain delay, grace period, the settling of cut runs and
#: the telemetry flush must fit.
KUBERNETES_GRACE_S = 30.0

#: The longest the runs cut at the end of the grace period may take to answer 503 and record their spend (a
#: shared limits storage takes a round trip, at most ``3 x NON_REDIS_TIMEOUT``, 1.5 s by default).
CUT_RUNS_SETTLE_S = 2.0

#: The longest the scheduler may take to stop once the cut runs have settled (nothing is in flight by then).
SCHEDULER_STOP_S = 0.5


class ServeSettings(BaseSettings):
    """Every setting of the service, with its ``NON_SERVE_*`` variable."""

    model_config = SettingsConfigDict(
        env_prefix="NON_SERVE_", env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False,
        # inf passed every bound and failed later as an OverflowError: the grace period at shutdown, the spend
        # limit at the first request, the telemetry flush when the process ended (losing the last spans).
        allow_inf_nan=False, hide_input_in_errors=True,
    )  # fmt: skip

    host: str = Field(default="127.0.0.1", description="Address to listen on; 0.0.0.0 in a container.")
    port: int = Field(default=8000, ge=0, le=65535)
    tokens: SecretStr | None = Field(
        default=None, description="Bearer tokens, 'caller:token' (or bare tokens) separated by commas or new lines."
    )
    tokens_file: Path | None = Field(
        default=None,
        description="A file of tokens, one 'caller:token' a line; # comments.",
    )
    insecure_dev: bool = Field(default=False, description="Serve without authentication (development only).")
    rate_limit: str = Field(
        default="60/minute",
        description="Requests per caller, in the limits library's notation ('60/minute', '5/second')."
    )
    spend_limit_usd_per_day: float | None = Field(
        default=None, gt=0, description="USD a caller may spend per UTC day; unset means no spend limit."
    )
    limits_storage: str = Field(
        default="memory://",
        description="Where callers' counts live (limits library URI); memory:// keeps them per process.",
    )
    grace_period_s: float = Field(
        default=20.0, gt=0,
        description="How long in-flight requests may finish after SIGTERM.",
    )
    drain_delay_s: float = Field(
        default=2.0, ge=0, description="After SIGTERM, how long /readyz answers 503 before the listener closes."
    )
    telemetry_flush_s: float = Field(default=5.0, gt=0, description="How long the last telemetry export may take.")
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body accepted (bytes).")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="How long a request's body may take to arrive whole, from the request's start."
    )
    access_log: bool = False
    loop: Literal["asyncio", "uvloop"] = Field(
        default="asyncio",
        description="The event loop. asyncio's serves saturated connections in turn; uvloop's, measured here, "
        "let some wait far longer (see the README's benchmarks).",
    )

    @field_validator("rate_limit")
    @classmethod
    def _parses(cls, value: str) -> str:
        from nons.serve.counts import parse_rate

        parse_rate(value)  # its ValueError says what is wrong
        return value

    @property
    def shutdown_budget_s(self) -> float:
        """The longest a SIGTERM can take to end the process: drain delay, grace period, the settling of the runs
        it cut, and telemetry flush."""
        return self.drain_delay_s + self.grace_period_s + CUT_RUNS_SETTLE_S + SCHEDULER_STOP_S + self.telemetry_flush_s


#: The settings ``nons serve`` also takes as options, and the option of each (the others are variables only).
OPTIONS = {
    "host": "--host",
    "port": "--port",
    "tokens_file": "--tokens-file",
    "insecure_dev": "--insecure-dev",
    "rate_limit": "--rate-limit",
    "spend_limit_usd_per_day": "--spend-limit-usd-per-day",
    "limits_storage": "--limits-storage",
    "grace_period_s": "--grace-period",
    "drain_delay_s": "--drain-delay",
    "telemetry_flush_s": "--telemetry-flush",
    "access_log": "--access-log",
}


def describe_settings_error(error: ValidationError) -> str:
    """What is wrong with the service's settings, one part per setting, named as its variable and, when it has one,
    its option (``NON_SERVE_GRACE_PERIOD_S / --grace-period``); values are not quoted (a token may be among them)."""
    parts = []
    for problem in error.errors(include_url=False):
        name = str((problem.get("loc") or ("",))[0])
        option = OPTIONS.get(name)
        named = f"NON_SERVE_{name.upper()}" + (f" / {option}" if option else "")
        parts.append(f"{named}: {problem.get('msg')}")
    return "; ".join(parts)
