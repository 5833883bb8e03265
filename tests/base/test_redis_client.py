"""``nons.base.redis_client``: the link to a Redis that may be down."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from nons.base.redis_client import RedisLink


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback Redis URL whose connections are refused: the port is bound and never listened on, so no other
    socket can take it (a closed "free" port in the ephemeral range can be reused, even by our own connect)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


def test_asyncio_run_returns_while_the_probe_of_a_down_redis_is_running(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe of a Redis that stays down ends when the loop shuts down, wherever the cancellation finds it.

    With a 1 ms probe interval the cancellation of ``asyncio.run()``'s shutdown often meets a ping that has just
    failed: wrapped in ``asyncio.wait_for``, one run in three never returned."""
    caplog.set_level(logging.ERROR, logger="nons.redis")  # the outage warning, once per run
    returned = 0

    async def down_for(link: RedisLink, seconds: float) -> None:
        link.failed(ConnectionError("refused"))
        await asyncio.sleep(seconds)

    def runs() -> None:
        nonlocal returned
        for i in range(60):
            link = RedisLink(refused_url, probe_interval_s=0.001)
            asyncio.run(down_for(link, 0.0005 * (i % 20)))  # a different point of the probe's cycle each run
            assert not link.up
            returned += 1

    thread = threading.Thread(target=runs, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert returned == 60, f"asyncio.run() did not return in run {returned + 1}"
