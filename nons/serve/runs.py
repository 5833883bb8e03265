"""One pass of a network for one request: charged to its caller, cut short when the caller goes away or the
service shuts down, and what it spent known however it ends.

A caller that closes its connection (a client timeout, a user who gave up) no longer wants the answer, but a
pass left running would go on paying for LLM calls, count as a success and hold up a shutdown. The pass runs
as a task of its own while the request's ``receive`` is watched for the ASGI ``http.disconnect``; when that
comes first, the pass is cancelled (its in-flight provider calls with it) and the response, which no one will
read, has status 499, the code nginx gave to a request whose client closed it. The server span and the HTTP
metrics carry it, so such runs are counted apart from the ones that answered.

What a pass spent is charged to its caller's daily spend however it ends: a result's cost, a failed pass's
``partial_result``, and for a cancelled pass the cost its ``on_progress`` events reported when it ended (a
cancellation carries no result). That is the calls that answered: a call cut in flight may still be billed by
its provider, so a cancelled pass's charge is a lower bound. The run counts as in flight until its spend is
recorded, so that a shutdown waits for the record (``ServiceState.settle``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.types import Receive

from nons.core.budgets import spending_for
from nons.core.network import NoN
from nons.core.progress import ProgressEvent
from nons.core.types import InputValidationError, NetworkResult, NetworkTimeoutError, NonError
from nons.observability import names
from nons.serve.refusals import Refusal, error_response
from nons.serve.schemas import Violation

__all__ = ["CLIENT_CLOSED_REQUEST", "Charge", "ServiceState", "run_for_request", "shut_down_response"]

logger = logging.getLogger("nons.serve")

#: The status of a run whose caller closed its connection first (nginx's "client closed request").
CLIENT_CLOSED_REQUEST = 499

#: Records what a run spent (USD) against its caller, and how many of its calls had no known price:
#: ``CallerLimits.record_spend`` bound to the caller and the network.
Charge = Callable[[float, int], Awaitable[None]]


@dataclass
class ServiceState:
    """What the process-level shutdown shares with the app: draining, and the runs in progress."""

    draining: bool = False
    in_flight: int = 0

    async def settle(self, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, until no run is in flight: the runs that uvicorn cancelled at the end
        of its grace period still answer 503 and record their spend, which a shared limits storage takes a
        round trip to do. Without the wait, the process would end and cancel those records mid-way."""
        deadline = time.monotonic() + timeout_s
        # Polled, as uvicorn polls its own tasks at shutdown: ``in_flight`` stays a plain counter.
        while self.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.in_flight:
            logger.warning(
                "%d run(s) had not recorded their spend %g s after the shutdown cut them: what they spent may not "
                "be counted (a slow limits storage?)", self.in_flight, timeout_s,
            )  # fmt: skip


class _Spend:
    """The cost a pass's progress events report: known at its end however it ends; and the calls of unknown
    price its result or failure reports."""

    __slots__ = ("unpriced", "usd")

    def __init__(self) -> None:
        self.usd = 0.0
        self.unpriced = 0

    def see(self, event: ProgressEvent) -> None:
        self.usd = event.cost_usd


async def run_for_request(
    network: NoN, text: str, state: ServiceState, caller: str, receive: Receive, charge: Charge
) -> NetworkResult | JSONResponse:
    """One pass of ``network`` on ``text``, charged to ``caller``'s budgets (``configure_budgets(Budget(
    per="caller"))``), with the network's failures as error responses. What the pass spent goes to ``charge``,
    a failed or cancelled one's included: the calls that answered before it ended were paid for, and a caller
    whose runs fail late would otherwise never reach its spend limit. ``receive`` is the request's, its body
    already read."""
    spend = _Spend()
    state.in_flight += 1
    try:
        return await _run(network, text, state, caller, receive, spend)
    finally:
        # However the run ended: answered, refused, or cancelled with the request (a server other than uvicorn,
        # a middleware's timeout), what it spent is recorded.
        try:
            await _charged(charge, spend.usd, spend.unpriced)
        finally:
            state.in_flight -= 1


async def _charged(charge: Charge, usd: float, unpriced: int) -> None:
    """``charge(usd, unpriced)`` to its end, even if the request is cancelled meanwhile (it is bounded by the
    limits storage's timeout); the cancellation is raised after it."""
    record = asyncio.ensure_future(charge(usd, unpriced))
    try:
        await asyncio.shield(record)
    except asyncio.CancelledError:
        await asyncio.wait((record,))
        if not record.cancelled():
            record.exception()  # retrieved: a failed record is the charge's to report, not asyncio's to log
        raise


async def _run(
    network: NoN, text: str, state: ServiceState, caller: str, receive: Receive, spend: _Spend
) -> NetworkResult | JSONResponse:
    """The pass's result or error response; ``spend`` follows its progress events, and ends as what it spent."""
    with spending_for(caller):  # the task copies the context: its calls are the caller's
        run = asyncio.ensure_future(network.run(text, on_progress=spend.see))
    try:
        client_gone = await _client_left_first(run, receive)
    except asyncio.CancelledError:
        await _cancel(run)
        if not state.draining:
            raise
        # uvicorn cancelled the run at the end of the grace period: tell the caller to retry elsewhere rather
        # than leave it a bare 500.
        return shut_down_response()
    if client_gone:
        await _cancel(run)
        detail = "the client closed the connection before the run finished; the run was cancelled"
        return error_response(CLIENT_CLOSED_REQUEST, "client_closed_request", detail)
    return _outcome(run, spend)


def shut_down_response() -> JSONResponse:
    """The answer to a request cut by the end of the grace period: retry, another replica will answer."""
    return error_response(
        503,
        "shut_down",
        "the service shut down before the request was answered; retry",
        {"Retry-After": "1", "Connection": "close"},
    )


def _outcome(run: asyncio.Future[NetworkResult], spend: _Spend) -> NetworkResult | JSONResponse:
    """The finished ``run``'s result, or its failure as a response (a refusal for bad input); ``spend`` set to
    what the result or the failure's partial result says it spent."""
    try:
        result = run.result()
    except InputValidationError as error:
        raise _refuse_input(error) from None
    except NonError as error:
        if error.partial_result is not None:
            spend.usd, spend.unpriced = error.partial_result.cost_usd, error.partial_result.unpriced_calls
        if isinstance(error, NetworkTimeoutError):
            return error_response(504, "network_timeout", str(error))
        return error_response(502, "network_failed", f"{type(error).__name__}: {error}")
    spend.usd, spend.unpriced = result.cost_usd, result.unpriced_calls
    return result


async def _client_left_first(run: asyncio.Future[NetworkResult], receive: Receive) -> bool:
    """Wait for ``run`` to end, or for the client to disconnect before it does (then ``True``)."""
    watcher = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((run, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    client_gone = watcher.done() and not watcher.cancelled() and watcher.exception() is None and watcher.result()
    if run.done():
        return False  # finished, even if the client left at the same moment: its outcome is the true one
    if not client_gone:
        # A server whose receive failed or answered otherwise cannot say when its client leaves: the run goes on
        # to its end.
        await asyncio.wait((run,))
        return False
    return True


async def _disconnect(receive: Receive) -> bool:
    """Whether the ASGI server reported that the client disconnected. With the body read, the next message is
    ``http.disconnect``, sent when the client leaves; a server that sends anything else cannot report it, and
    asking again would spin."""
    return bool((await receive())["type"] == "http.disconnect")


async def _cancel(run: asyncio.Future[NetworkResult]) -> None:
    """Cancel ``run`` and wait until it has ended: its nodes record their calls, and its spans end."""
    run.cancel()
    await asyncio.wait((run,))
    if not run.cancelled():
        run.exception()  # it ended another way as it was cancelled: retrieved, so asyncio does not log it


def _refuse_input(error: InputValidationError) -> Refusal:
    # The engine's own input check (a network's max_input_chars may be below the service's limit).
    rule = "max_length" if "over the limit" in str(error) else "not_empty"
    violation = Violation(field="input", rule=rule, message=str(error))
    return Refusal(422, names.REFUSAL_INVALID_INPUT, str(error), violations=[violation])
