"""Leaving on time: the last telemetry is flushed at exit and on SIGTERM, within ``NON_TELEMETRY_EXIT_TIMEOUT``.

With the collector unreachable, each OTLP exporter retries every batch until its own timeout
(``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s), batch after batch, and a provider's ``shutdown()`` waits for all of it.
So flushing runs on a worker thread of its own, and whoever asks for it (the exit handler, the SIGTERM handler,
:func:`~nons.observability.shutdown_telemetry`) waits for that thread at most the time limit; what is not out
by then is dropped, and one warning says so.

The worker is started when telemetry is configured, not at exit: Python 3.12+ refuses new threads while the
interpreter exits, which is when the exit handler runs.

SIGTERM (``docker stop``, a Kubernetes rollout) ends a process without running exit handlers, so NoN catches it:
flush within the limit, then hand the signal on to whatever handled it before (the application's handler), or,
when that was the default action, end the process by SIGTERM as it would have ended. ``SIG_IGN`` stays ignored.
``NON_TELEMETRY_SIGTERM_HANDLER=false`` installs nothing.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from nons.base.forking import in_forked_child

__all__ = ["Flusher", "install_sigterm_flush", "uninstall_sigterm_flush"]

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    work: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)


class Flusher:
    """A daemon thread that runs flush and shutdown work for :class:`~nons.observability.TelemetryHandle`, so
    that the caller can stop waiting at a time limit while an exporter is still retrying."""

    def __init__(self) -> None:
        self._reset()
        # A forked child has no thread of its parent's: without this, its flushes would queue work that nothing
        # runs, and its exit would wait out the limit and drop its telemetry.
        in_forked_child(self._reset)

    def _reset(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (once). Raises ``RuntimeError`` when the interpreter no longer allows threads."""
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="nons-telemetry-flush", daemon=True)
                thread.start()
                self._thread = thread

    @property
    def started(self) -> bool:
        return self._thread is not None

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.work()
            except Exception:  # flushing telemetry must never fail the application
                logger.debug("telemetry flush failed", exc_info=True)
            finally:
                job.done.set()

    def run(self, work: Callable[[], None], timeout_s: float) -> bool:
        """Run ``work`` on the thread and wait for it ``timeout_s`` at most. Returns whether it finished.

        Without a thread (none could be started), ``work`` runs here, unbounded: better late than lost.
        """
        if self._thread is None:
            try:
                self.start()
            except RuntimeError:
                work()
                return True
        job = _Job(work)
        self._jobs.put(job)
        return job.done.wait(timeout_s)


# --- SIGTERM -------------------------------------------------------------------------------------------------

_installed: Callable[[int, FrameType | None], None] | None = None
_previous: Any = None


def install_sigterm_flush(flush: Callable[[float], bool], timeout_s: Callable[[], float]) -> bool:
    """Handle SIGTERM by ``flush(timeout_s())``, then by what handled SIGTERM before. Returns whether a handler
    was installed: not off the main thread (only it may set signal handlers), nor twice."""
    global _installed, _previous
    if _installed is not None or threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        try:
            flush(timeout_s())
        finally:
            _hand_on(previous, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    _installed, _previous = on_sigterm, previous
    return True


def _hand_on(previous: Any, signum: int, frame: FrameType | None) -> None:
    """Do what SIGTERM would have done without NoN."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:
        # SIG_DFL (or None: a handler not installed from Python): end the process the way SIGTERM does, so that
        # its parent sees "killed by SIGTERM", as it would have.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def uninstall_sigterm_flush() -> None:
    """Put back the SIGTERM handler NoN replaced, if NoN's is still the one installed."""
    global _installed, _previous
    if _installed is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _installed:
        signal.signal(signal.SIGTERM, _previous if _previous is not None else signal.SIG_DFL)
    _installed, _previous = None, None
