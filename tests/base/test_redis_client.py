"""``nons.base.redis_client``: the link to a Redis that may be down."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator

import pytest

from nons.base.errors import ConfigurationError
from nons.base.redis_client import RedisLink, safe_url


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


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:notaport/0", "notaport"),
        ("redis://127.0.0.1:99999/0", "out of range"),
        ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
        ("redis://:hunter2secret@127.0.0.1:notaport/0", "notaport"),
        ("redis://127.0.0.1:6379/0?password=hunter2secret&no_such_option=1", "no_such_option"),
        ("redis://[::1/0", "IPv6"),
    ],
)
def test_a_url_redis_py_would_refuse_is_refused_when_the_link_is_made_without_its_password(
    url: str, problem: str
) -> None:
    """Refused at configuration, naming the problem: a URL refused only at the first connection left every call
    waiting for a permit waiting for ever."""
    with pytest.raises(ConfigurationError, match="not valid") as refused:
        RedisLink(url)
    assert problem in str(refused.value)
    assert "hunter2secret" not in str(refused.value)


def test_a_call_with_a_bad_non_redis_url_fails_at_once_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    from nons import NoN
    from nons.core import scheduler as scheduler_module

    monkeypatch.setenv("NON_REDIS_URL", "redis://:hunter2secret@127.0.0.1:notaport/0")
    monkeypatch.setattr(scheduler_module, "_scheduler", None)  # the process's scheduler is made from NON_REDIS_URL

    async def run() -> None:
        await asyncio.wait_for(NoN.from_operators(["generate"]).run("hello"), 10)

    with pytest.raises(ConfigurationError, match="notaport") as refused:
        asyncio.run(run())
    assert "hunter2secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://app:hunter2secret@127.0.0.1:6379/0", "redis://app:***@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/0?password=hunter2secret", "redis://127.0.0.1:6379/0?password=***"),
        ("redis://127.0.0.1/0?db=1&Password=hunter2secret", "redis://127.0.0.1/0?db=1&Password=***"),
        ("unix:///run/redis.sock?password=hunter2secret", "unix:///run/redis.sock?password=***"),
        ("redis://:hunter2secret@127.0.0.1:notaport/0", "redis://:***@127.0.0.1:notaport/0"),
        ("redis://:hunter2secret@[::1/0", "<a Redis URL that cannot be parsed>"),
    ],
)
def test_safe_url_shows_no_password_and_never_raises(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_the_outage_warning_shows_no_password_given_in_the_query(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py honours ``?password=``: the outage warning, which names the URL, must not show it."""
    caplog.set_level(logging.WARNING, logger="nons.redis")
    link = RedisLink(refused_url + "?password=hunter2secret")
    link.failed(ConnectionError("refused"))
    assert "unreachable" in caplog.text and "password=***" in caplog.text
    assert "hunter2secret" not in caplog.text + repr(link)


def test_a_urls_password_is_redacted_as_written_and_as_decoded() -> None:
    from nons.base.redaction import redact

    RedisLink("redis://:p%40ss-word-7731@127.0.0.1:6379/0")  # redis-py reads the password as "p@ss-word-7731"
    assert redact("AUTH failed for p@ss-word-7731") == "AUTH failed for [REDACTED]"
    assert "p%40ss-word-7731" not in redact("redis://:p%40ss-word-7731@127.0.0.1:6379/0")


def test_a_link_without_the_redis_package_says_which_extra_to_install() -> None:
    import subprocess
    import sys

    # As if redis were not installed: a None in sys.modules makes its import fail.
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from nons.base.redis_client import RedisLink\n"
        "from nons.base.errors import ConfigurationError\n"
        "try:\n    RedisLink('redis://127.0.0.1:6390/0')\nexcept ConfigurationError as error:\n    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "needs the redis package" in out and "pip install 'nons[redis]'" in out
