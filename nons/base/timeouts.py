"""Bounding an await in time, without losing a cancellation; and checking a bound given in seconds.

``asyncio.wait_for`` runs what it awaits in a task of its own on Python 3.10 and 3.11, and can then drop a
cancellation that arrives as the awaited result does: the caller goes on as if it had not been cancelled (a
node cancelled by a FAIL_FAST sibling would keep running, a request cancelled at shutdown would keep waiting).
``asyncio.timeout`` (3.11+) has no such task, and costs one timer.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable
from typing import TypeVar

from nons.base.errors import ConfigurationError

__all__ = ["positive_seconds", "within"]

_T = TypeVar("_T")

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[_T], seconds: float | None) -> _T:
        """``awaitable``'s result, or ``TimeoutError`` (``asyncio.TimeoutError``) once ``seconds`` have passed
        (``None``: no bound)."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # Python 3.10 has no asyncio.timeout: wait_for, with its task

    async def within(awaitable: Awaitable[_T], seconds: float | None) -> _T:
        """``awaitable``'s result, or ``asyncio.TimeoutError`` once ``seconds`` have passed (``None``: no bound)."""
        return await asyncio.wait_for(awaitable, seconds)


def positive_seconds(value: object, what: str) -> float:
    """``value`` as a float of seconds; :class:`~nons.base.errors.ConfigurationError` naming ``what`` unless it is
    a finite number above 0 (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigurationError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)
