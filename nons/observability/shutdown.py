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

A multiprocessing child (start method ``fork``) ends by ``os._exit`` once its target returns, which runs no exit
handler: only multiprocessing's own finalizers. :class:`AtMultiprocessingChildEnd` runs the exit work there.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from nons.base.forking import in_forked_child

__all__ = ["AtMultiprocessingChildEnd", "Flusher", "install_sigterm_flush", "uninstall_sigterm_flush"]

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
        # Reentrant: the SIGTERM handler flushes, and SIGTERM may arrive while this thread is in start() (a
        # multiprocessing pool terminates its workers while they run their exit flush): with a plain lock, the
        # handler waited for itself forever.
        self._lock = threading.RLock()

    def start(self) -> None:
        """Start the thread (once). Raises ``RuntimeError`` when the interpreter no longer allows threads."""
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="nons-telemetry-flush", daemon=True)
                # Recorded before it starts: a signal handler that interrupts thread.start() queues its work for
                # this thread rather than starting another.
                self._thread = thread
                try:
                    thread.start()
                except BaseException:
                    self._thread = None
                    raise

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


# --- multiprocessing children --------------------------------------------------------------------------------

#: Where the exit work runs among multiprocessing's finalizers (the highest first): among the first, with those
#: run before a child's daemonic children are stopped; a queue's feeder thread is joined later, at -5.
_CHILD_END_PRIORITY = 0


class AtMultiprocessingChildEnd:
    """Runs ``work`` when a multiprocessing child (start method ``fork``) ends: this process, if it is one, and
    every multiprocessing child forked from it later. Keep the object: the fork hooks hold it weakly.

    Such a child ends by ``os._exit`` once its target returns, without the handlers ``atexit`` holds; what runs is
    multiprocessing's own finalizers. Its bootstrap clears the finalizers the child inherited right after the fork,
    then calls its after-fork hooks: so the fork hook registers an after-fork hook, and that one the finalizer.
    """

    def __init__(self, work: Callable[[], object]) -> None:
        self._work = work
        if _in_multiprocessing_child():  # set up in the child itself
            self._finalize()
        in_forked_child(self._after_fork)

    def _after_fork(self) -> None:
        # Without multiprocessing imported before the fork, the fork is not multiprocessing's (plain os.fork
        # children leave through sys.exit, and atexit).
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            util.register_after_fork(self, AtMultiprocessingChildEnd._finalize)

    def _finalize(self) -> None:
        from multiprocessing import util

        util.Finalize(None, self._work, exitpriority=_CHILD_END_PRIORITY)


def _in_multiprocessing_child() -> bool:
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and multiprocessing.parent_process() is not None


# --- SIGTERM -------------------------------------------------------------------------------------------------

_installed: Callable[[int, FrameType | None], None] | None = None
_previous: Any = None


def install_sigterm_flush(flush: Callable[[float], bool], timeout_s: Callable[[], float]) -> bool:
    """Handle SIGTERM by ``flush(timeout_s())``, then by what handled SIGTERM before. Returns whether a handler
    was installed: not off the main thread (only it may set signal handlers), nor twice, nor where the application
    ignores SIGTERM (the process does not end, so there is nothing to flush for; and an ignored signal stays
    ignored in the processes it starts, where a Python handler is reset to the default, which ends them)."""
    global _installed, _previous
    if _installed is not None or threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        return False

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        _handling.set()
        try:
            flush(timeout_s())
        finally:
            _hand_on(previous, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    _installed, _previous = on_sigterm, previous
    global _watching_forks
    if not _watching_forks and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_watch_sigterm_in_child)
        _watching_forks = True
    return True


# --- SIGTERM in forked children ------------------------------------------------------------------------------
#
# A Python handler runs on the main thread, between two bytecodes. A SIGTERM that arrives just as the main thread
# enters a blocking wait (after its last check for signals, before the system call) is caught by the interpreter
# and left for later, and the wait never ends: a multiprocessing pool's worker idle on its task queue's lock, which
# the pool's exit terminates with SIGTERM, lived on and the pool waited for it for ever (about one pool in a
# hundred). Without a Python handler the signal would have ended the process. So in a forked child whose SIGTERM
# handler is NoN's, a thread learns of each SIGTERM through the interpreter's wakeup fd and, if the handler has not
# started within half a second, sends SIGTERM again to the main thread itself, which interrupts its wait.

_watching_forks = False
_handling = threading.Event()
#: This process's wakeup pipe (read, write), when NoN's watcher reads it.
_wakeup_pipe: tuple[int, int] | None = None
_NUDGE_AFTER_S = 0.5


def _watch_sigterm_in_child() -> None:
    global _handling, _wakeup_pipe
    _handling = threading.Event()
    # A grandchild inherits its parent's pipe and wakeup fd: it takes a pipe of its own, or its SIGTERMs would
    # reach its parent's watcher, which would then end its parent.
    inherited, _wakeup_pipe = _wakeup_pipe, None
    if _installed is None or signal.getsignal(signal.SIGTERM) is not _installed:
        return
    read, write = os.pipe()
    try:
        os.set_blocking(write, False)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (OSError, ValueError):
        previous = None
    ours = previous == -1 or (inherited is not None and previous == inherited[1])
    if not ours:  # could not set it, or the application uses it: not NoN's to take
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read)
        os.close(write)
        return
    if inherited is not None:
        for fd in inherited:
            os.close(fd)
    _wakeup_pipe = (read, write)
    main = threading.main_thread().ident
    threading.Thread(target=_nudge_on_sigterm, args=(read, main), name="nons-sigterm-watch", daemon=True).start()


def _nudge_on_sigterm(read: int, main: int | None) -> None:
    while True:
        try:
            received = os.read(read, 64)
        except OSError:
            return
        if not received:
            return
        if signal.SIGTERM in received and not _handling.wait(_NUDGE_AFTER_S) and main is not None:
            signal.pthread_kill(main, signal.SIGTERM)


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
