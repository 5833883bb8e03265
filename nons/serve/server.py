"""Run the service with uvicorn, and shut it down gracefully.

On SIGTERM (or Ctrl+C) the service drains:

1. at once, ``/readyz`` answers 503 and new runs are refused with 503 (``draining``), while the listener stays
   open for ``drain_delay_s`` so that load balancers and Kubernetes see the replica leave instead of a refused
   connection;
2. then uvicorn stops listening, and requests in flight have ``grace_period_s`` to finish (what is left then is
   cancelled);
3. the runs cut then answer 503 and record their spend (``CUT_RUNS_SETTLE_S``, 2 s at most), the scheduler stops
   (``SCHEDULER_STOP_S``, 0.5 s at most), and telemetry is flushed within ``telemetry_flush_s``; the process exits
   with 0.

All together must fit Kubernetes' default grace period of 30 s (the defaults take 29.5 s at most). A second
signal skips what is left of the drain delay; a second Ctrl+C during the grace period exits at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from nons.serve.app import ServiceState

__all__ = ["DrainingServer", "run_server"]

logger = logging.getLogger("nons.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain phase before its own graceful shutdown (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, state: ServiceState, drain_delay_s: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_delay_s = drain_delay_s
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None:
            # Runs in the main thread, between two steps of the event loop: setting flags is safe here.
            self.drain_started = time.monotonic()
            self.state.draining = True
            logger.warning(
                "%s received: draining (readiness 503, new runs refused); %d run(s) in flight",
                signal.Signals(sig).name, self.state.in_flight,
            )
            return
        # A second signal: stop waiting for the drain delay (and, for a second Ctrl+C, for anything).
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # exit normally after shutdown instead of re-raising the signal

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and time.monotonic() - self.drain_started >= self.drain_delay_s:
            # As uvicorn's own first signal would: a Ctrl+C during the grace period then forces the exit (without
            # it, the next Ctrl+C only set this, and it took a third).
            self.should_exit = True
            return True
        return await super().on_tick(counter)


def run_server(app: Any, state: ServiceState, *, host: str, port: int, grace_period_s: float,
               drain_delay_s: float, access_log: bool = False, loop: str = "asyncio") -> None:
    """Serve ``app`` until a signal, then drain and shut down (see the module docstring)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        loop=loop,  # type: ignore[arg-type]  # validated by ServeSettings
        # uvicorn types it as an int, and hands it to asyncio.timeout, which takes seconds as a float: rounded,
        # 2.5 s was 2 s, and a run the grace period allows was cut.
        timeout_graceful_shutdown=grace_period_s,  # type: ignore[arg-type]
        access_log=access_log,
        log_config=None,  # the nons CLI configured logging already; uvicorn's loggers propagate to it
        server_header=False,
    )
    for name in ("uvicorn", "uvicorn.error"):
        # Say where it listens and when it stops, unless the application set uvicorn's log level itself.
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)
    server = DrainingServer(config, state, drain_delay_s)
    try:
        server.run()
    except SystemExit as error:
        # uvicorn exits 3 when it cannot start (the port is taken): the CLI's statuses are 0, 1 and 2.
        raise SystemExit(1 if error.code == STARTUP_FAILURE else error.code) from None
    if not server.started:
        sys.exit(1)  # uvicorn logged why (the app failed to start); 1, as every nons command whose run failed
