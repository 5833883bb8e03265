"""The process's ledger of budgets (:class:`~nons.core.budget_ledger.LocalLedger`)."""

from __future__ import annotations

import time

from nons.core import budget_ledger
from nons.core.budget_ledger import LocalLedger


def test_ended_windows_are_forgotten_so_a_budget_per_caller_stays_bounded() -> None:
    # A caller budget with a window kept a window for every caller ever seen, ended or not (211 bytes each).
    ledger = LocalLedger()
    callers = 3 * budget_ledger._SWEEP_EVERY
    for caller in range(callers):
        assert ledger.reserve([(f"caller:{caller}:daily", 1.0, 0.01)], 0.5)[0] == 0
    time.sleep(0.02)  # every window ends
    for caller in range(callers, callers + budget_ledger._SWEEP_EVERY):
        ledger.reserve([(f"caller:{caller}:daily", 1.0, 0.01)], 0.5)
    assert len(ledger._windows) <= budget_ledger._SWEEP_EVERY


def test_a_hold_settles_in_its_window_after_the_window_was_swept() -> None:
    ledger = LocalLedger()
    _, [window] = ledger.reserve([("caller:a:daily", 1.0, 0.01)], 0.75)
    time.sleep(0.02)
    for caller in range(budget_ledger._SWEEP_EVERY):
        ledger.reserve([(f"caller:{caller}:daily", 1.0, 0.01)], 0.5)
    ledger.settle([window], -0.5)
    assert window.used == 0.25
    # And the caller's next window starts empty, whatever its ended one held.
    assert ledger.reserve([("caller:a:daily", 1.0, 0.01)], 1.0)[0] == 0
