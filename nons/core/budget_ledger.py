"""Where budgets are counted in this process (:class:`LocalLedger`), and what one attempt holds of them until it
ends (:class:`BudgetHold`). :mod:`nons.core.budgets` reserves and settles through them."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from nons.base.types import Budget

__all__ = ["BudgetHold", "LocalLedger", "Window"]

#: Every this many windows opened, the ended ones are forgotten: a cost of one walk per that many, and at most
#: about that many ended windows kept (some 200 bytes each).
_SWEEP_EVERY = 1024


class Window:
    """One window of one budget key: what is reserved or spent in it, and when it ends (``inf``: never). A hold
    keeps the windows it reserved in, so that it settles in them, not in whichever window is current by then."""

    __slots__ = ("ends", "used")

    def __init__(self, ends: float) -> None:
        self.used = 0.0
        self.ends = ends


class LocalLedger:
    """Budgets counted in this process (thread-safe): what is reserved or spent per key, per window."""

    def __init__(self) -> None:
        self._windows: dict[str, Window] = {}
        self._lock = threading.Lock()
        self._opened = 0  # windows opened, to sweep ended ones out every _SWEEP_EVERY

    def reserve(self, keys: Sequence[tuple[str, float, float | None]], amount: float) -> tuple[int, list[Window]]:
        """Reserve ``amount`` against every ``(key, limit, window_s)``: ``(0, the windows reserved in)``, or
        ``(the 1-based index of the one that cannot hold it, [])``, and then nothing is reserved."""
        now = time.monotonic()
        with self._lock:
            windows = []
            for index, (key, limit, window_s) in enumerate(keys, 1):
                window = self._windows.get(key)
                if window is None or now >= window.ends:
                    window = self._windows[key] = Window(now + window_s if window_s else math.inf)
                    self._opened += 1
                    if self._opened % _SWEEP_EVERY == 0:
                        self._sweep(now)
                if window.used + amount > limit * (1 + 1e-12):
                    return index, []
                windows.append(window)
            for window in windows:
                window.used += amount
        return 0, windows

    def _sweep(self, now: float) -> None:
        """Forget the windows that have ended (a hold that reserved in one keeps it, to settle in it): a budget
        per caller, with a window, would otherwise keep one for every caller ever seen."""
        self._windows = {key: window for key, window in self._windows.items() if window.ends > now}

    def settle(self, windows: Sequence[Window], delta: float) -> None:
        """Add ``delta`` (negative: give back) to what ``windows`` hold. A window that has ended owes nothing and
        is owed nothing: the window after it starts from its own reservations."""
        with self._lock:
            for window in windows:
                window.used = max(0.0, window.used + delta)

    def forget(self, key: str) -> None:
        """Drop the window of ``key``: what it counted is counted elsewhere now (in Redis, after an outage)."""
        with self._lock:
            self._windows.pop(key, None)

    def used(self, key: str) -> float:
        window = self._windows.get(key)
        return 0.0 if window is None or time.monotonic() >= window.ends else window.used


@dataclass(slots=True)
class BudgetHold:
    """What one attempt reserved, to settle when it ends."""

    amount: float
    pass_ledger: LocalLedger
    #: (name, scope) of every budget it counts against, for the metrics.
    labels: list[tuple[str, str]] = field(default_factory=list)
    #: The windows it reserved in, in the pass's ledger and the process's.
    pass_windows: list[Window] = field(default_factory=list)
    process_windows: list[Window] = field(default_factory=list)
    shared_keys: list[str] = field(default_factory=list)
    #: When each shared key's window reserved in ends, in ms on Redis's clock (0: never): settled only in it.
    shared_ends: list[int] = field(default_factory=list)
    #: The shared budgets' keys and window lengths (ms, 0: none) of a hold counted locally while Redis was
    #: unreachable: what the attempt spent is added to them when Redis is back.
    outage_keys: list[tuple[str, int]] = field(default_factory=list)
    #: (budget, key, limit) of the budgets counted in this process whose usage gauge its settlement updates.
    gauged: list[tuple[Budget, str, float]] = field(default_factory=list)
    #: What the same attempt reserved against the budgets of the passes it runs inside (an agent run in a node):
    #: settled with this one.
    linked: list[BudgetHold] = field(default_factory=list)

    def link(self, other: BudgetHold) -> BudgetHold:
        """Settle ``other`` with this hold, and count its budgets in this hold's labels; returns this hold."""
        self.linked.append(other)
        # One label each: nons.budget.spent counts the spend once per budget name and scope.
        self.labels.extend(label for label in other.labels if label not in self.labels)
        return self
