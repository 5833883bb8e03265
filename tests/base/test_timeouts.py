"""``within``: an await bounded in time that never drops a cancellation."""

from __future__ import annotations

import asyncio
import math
import sys

import pytest

from nons.base.errors import ConfigurationError
from nons.base.timeouts import positive_seconds, within


async def test_the_result_comes_back_within_the_time() -> None:
    assert await within(asyncio.sleep(0, result="answer"), 5) == "answer"


async def test_past_the_time_it_is_a_timeout_error() -> None:
    with pytest.raises(asyncio.TimeoutError):
        await within(asyncio.sleep(5), 0.01)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 has only asyncio.wait_for, which can drop it")
async def test_a_cancellation_that_arrives_with_the_result_is_not_dropped() -> None:
    # asyncio.wait_for (Python 3.11) returned the result here and the cancelled caller went on.
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(within(answer, 5))
    await asyncio.sleep(0)  # waiting on the answer
    answer.set_result("answer")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.mark.parametrize("value", [0, -1, 0.0, math.inf, math.nan, True, "5", None])
def test_a_bound_in_seconds_that_is_not_a_finite_positive_number_is_refused_by_name(value: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^a tool's timeout_s must be a positive number of seconds, got "):
        positive_seconds(value, "a tool's timeout_s")


def test_a_bound_in_seconds_comes_back_as_a_float() -> None:
    assert positive_seconds(2, "x") == 2.0 and type(positive_seconds(2, "x")) is float
