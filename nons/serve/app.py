"""The ASGI application: networks behind HTTP, with callers, limits, health and readiness.

    POST /v1/networks/{name}/run   {"input": "..."} -> output, cost, usage, duration, trace id
    GET  /v1/networks              the networks and their structure
    GET  /healthz                  liveness
    GET  /readyz                   readiness: scheduler running, queue, open breakers, paused providers;
                                   503 while draining
    GET  /docs, /redoc, /openapi.json

Requests are checked in this order, and nothing reaches a model before all checks pass: body size (413), bearer
token (401), shutting down (503), network name (404), rate and spend limits (429 with ``Retry-After``), input
rules (422). Every refusal is counted in ``nons.serve.refusals`` by reason.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations at runtime, and
# some of them name this module's closures (the path parameter, the dependencies).
import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from nons.base.redis_client import link_from_settings
from nons.base.version import __version__
from nons.core.network import NoN
from nons.core.scheduler import get_scheduler, start_scheduler, stop_scheduler
from nons.core.types import NetworkResult
from nons.observability import names
from nons.serve.auth import Caller, TokenTable
from nons.serve.bodylimit import BodyLimit
from nons.serve.limits import CallerLimits, LimitsUnavailable
from nons.serve.refusals import Refusal, http_error_handler, refusal_handler, validation_handler
from nons.serve.runs import ServiceState, run_for_request
from nons.serve.schemas import (
    ErrorBody,
    Health,
    NetworkList,
    Readiness,
    RunResponse,
    UsageBody,
    jsonable_output,
    run_request_model,
)
from nons.serve.settings import CUT_RUNS_SETTLE_S, SCHEDULER_STOP_S
from nons.spec.describe import describe_network

__all__ = ["ServiceState", "create_app"]


def _error(description: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return response


_UNAUTHORIZED = _error("No bearer token, or not a valid one.", {"WWW-Authenticate": "Bearer"})
_RETRY = {"Retry-After": "Seconds to wait before the request can succeed."}
_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _UNAUTHORIZED,
    404: _error("No network of that name."),
    413: _error("The request body is too large."),
    422: _error("The input breaks a rule (too long, empty, missing, wrong type); nothing was sent to a model."),
    429: _error("Over the caller's rate or daily spend limit.", _RETRY),
    499: _error("The client closed the connection before the run finished: the run was cancelled, no one reads this."),
    502: _error("The network failed (a provider error, a failed layer)."),
    503: _error(
        "The service is shutting down (before or during the run), or cannot check the caller's limits.", _RETRY
    ),
    504: _error("The network did not finish within its timeout."),
}


def _run_response(name: str, result: NetworkResult) -> RunResponse:
    usage = result.usage
    return RunResponse(
        network=name,
        output=jsonable_output(result.output),
        cost_usd=result.cost_usd,
        unpriced_calls=result.unpriced_calls,
        llm_calls=len(result.calls),
        usage=UsageBody(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            total_tokens=usage.total_tokens,
            unreported_calls=result.usage_unreported_calls,
        ),
        duration_s=result.duration_s,
        trace_id=result.trace_id,
    )


def _new_app(networks: Mapping[str, NoN], state: ServiceState, max_body_bytes: int, body_timeout_s: float) -> FastAPI:
    """The FastAPI app with its lifespan, error handlers and body limit; no routes yet."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start_scheduler()  # so that readiness reports a running scheduler before the first call
        link = link_from_settings()
        # Counted among the replicas from its start, busy or idle (each replica's share in an outage of Redis).
        heartbeats = asyncio.create_task(link.keep_alive()) if link is not None else None
        yield
        if heartbeats is not None:
            heartbeats.cancel()
        # uvicorn has let in-flight requests finish, or cancelled them after the grace period: those still answer
        # and record their spend (a round trip to a shared limits storage) before the process ends.
        await state.settle(timeout_s=CUT_RUNS_SETTLE_S)
        await stop_scheduler(drain=True, timeout=SCHEDULER_STOP_S)

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # Server spans and HTTP metrics come from the OpenTelemetry FastAPI instrumentation (nons.serve.service);
        # FastAPI's own telemetry (newer releases) stays off so that nothing is recorded twice.
        options["telemetry"] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(
        title="NoN service",
        version=__version__,
        description="Networks of LLM calls over HTTP. Networks: " + (", ".join(networks) or "none") + ".",
        lifespan=lifespan,
        **options,
    )
    app.state.service = state
    app.add_exception_handler(Refusal, refusal_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout_s=body_timeout_s, state=state)
    return app


def _authenticator(tokens: TokenTable | None) -> Callable[..., Awaitable[Caller]]:
    """The dependency that names the caller from its bearer token (401 without a valid one)."""
    bearer = HTTPBearer(auto_error=False, description="A token from NON_SERVE_TOKENS or the tokens file.")

    async def authenticate(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Caller:
        if tokens is None:
            return Caller(f"address-{request.client.host}" if request.client else "anonymous")
        if credentials is None:
            raise Refusal(
                401, names.REFUSAL_UNAUTHORIZED, "a bearer token is required: Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        caller = tokens.caller_for(credentials.credentials)
        if caller is None:
            raise Refusal(
                401, names.REFUSAL_UNAUTHORIZED, "the bearer token is not valid",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return caller

    return authenticate


def _add_health_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        summary="Readiness",
        responses={503: {"model": Readiness, "description": "Draining, or the scheduler is not running."}},
    )
    async def readyz() -> JSONResponse:
        health = get_scheduler().health()
        body = Readiness(
            ready=not state.draining and bool(health["scheduler_running"]),
            draining=state.draining,
            scheduler_running=health["scheduler_running"],
            queue_size=health["queue_size"],
            in_flight_calls=health["in_flight"],
            in_flight_requests=state.in_flight,
            open_breakers=health["open_breakers"],
            paused=health.get("paused", {}),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


def create_app(
    networks: Mapping[str, NoN],
    *,
    tokens: TokenTable | None,
    limits: CallerLimits,
    max_input_chars: int,
    max_body_bytes: int = 1_048_576,
    descriptions: Mapping[str, str] | None = None,
    state: ServiceState | None = None,
    body_timeout_s: float = 30.0,
) -> FastAPI:
    """The service for ``networks`` (by name). ``tokens=None`` serves without authentication (development
    only: every caller is known by its address)."""
    state = state or ServiceState()
    catalogue = [
        {"name": name, "description": (descriptions or {}).get(name, ""), "structure": describe_network(net)}
        for name, net in networks.items()
    ]
    app = _new_app(networks, state, max_body_bytes, body_timeout_s)
    _add_health_routes(app, state)
    authenticate = _authenticator(tokens)
    network_name = Path(description="A network's name (GET /v1/networks).", json_schema_extra={"enum": list(networks)})

    async def admit(name: Annotated[str, network_name], caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if state.draining:
            raise Refusal(
                503, names.REFUSAL_DRAINING, "the service is shutting down; retry, another replica will answer",
                {"Retry-After": "1", "Connection": "close"},
            )
        if name not in networks:
            raise Refusal(404, names.REFUSAL_UNKNOWN_NETWORK, f"no network named {name!r}; GET /v1/networks lists them")
        try:
            refusal = await limits.admit(caller.id)
        except LimitsUnavailable as error:
            raise Refusal(503, names.REFUSAL_LIMITS_UNAVAILABLE, str(error), {"Retry-After": "5"}) from None
        if refusal is not None:
            reason = names.REFUSAL_RATE_LIMITED if refusal.kind == "rate" else names.REFUSAL_SPEND_LIMITED
            raise Refusal(429, reason, refusal.detail, {"Retry-After": refusal.retry_after_header})
        return caller

    @app.get(
        "/v1/networks", response_model=NetworkList, tags=["networks"], responses={401: _UNAUTHORIZED},
        summary="The networks and their structure",
    )
    async def list_networks(caller: Annotated[Caller, Depends(authenticate)]) -> NetworkList:
        return NetworkList(networks=catalogue)

    async def run(
        request: Request, name: Annotated[str, network_name], body: Any, caller: Annotated[Caller, Depends(admit)]
    ) -> RunResponse | JSONResponse:
        result = await run_for_request(
            networks[name], body.input, state, caller.id, request.receive, partial(limits.record_spend, caller.id, name)
        )
        return result if isinstance(result, JSONResponse) else _run_response(name, result)

    # The body model is built for this app's input limit, so the annotation is set here.
    run.__annotations__["body"] = run_request_model(max_input_chars)
    app.post(
        "/v1/networks/{name}/run", response_model=RunResponse, tags=["networks"], responses=_RUN_RESPONSES,
        summary="Run one pass of a network",
    )(run)
    return app
