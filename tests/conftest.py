"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")
#: Standard variables that change what NoN records.
_OTEL_SWITCHES = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, NON_* setting or capture switch from the developer's shell, and no ``.env`` file, may change a
    test (each test runs in its own empty directory)."""
    import os

    for name in list(os.environ):
        if name in _KEY_VARIABLES or name in _OTEL_SWITCHES or name.startswith("NON_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def emu() -> Iterator[Any]:
    """A :class:`~nons.testing.ProviderEmulator` on loopback for the test (folders or modules that need other
    defaults define their own)."""
    from nons.testing import ProviderEmulator

    with ProviderEmulator() as emulator:
        yield emulator


# --------------------------------------------------------------------------------------------- redis


def _in_ci() -> bool:
    import os

    return os.environ.get("CI", "").lower() == "true"


class RedisServer:
    """Debian's ``redis-server`` on a free loopback port, without persistence, that a test may kill and restart.

    ``url`` is its address; :meth:`kill` stops it at once (SIGKILL, as a crash would), :meth:`start` brings it
    back on the same port, empty.
    """

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: Any = None

    def start(self) -> None:
        import subprocess
        import time

        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def command(self, *words: str) -> str | None:
        """Send one command (inline protocol); the answer's first line (a bulk string's value), or None when
        Redis is unreachable."""
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall((" ".join(words) + "\r\n").encode())
                lines = sock.recv(65536).decode().split("\r\n")
        except OSError:
            return None
        return lines[1] if lines[0].startswith("$") and lines[0] != "$-1" else lines[0]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_binary() -> str:
    import shutil

    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (Debian: apt-get install -y --no-install-recommends redis-server)"
        if _in_ci():
            pytest.fail(f"{message}; CI must install it", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[RedisServer]:
    server = RedisServer(_redis_binary(), _free_port())
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(_session_redis: RedisServer) -> RedisServer:
    """The session's Redis, emptied for this test (started again if a test killed it)."""
    if _session_redis.command("PING") != "+PONG":
        _session_redis.start()
    _session_redis.command("FLUSHALL")
    return _session_redis


@pytest.fixture(scope="module")
def redis_factory() -> Iterator[Callable[[], RedisServer]]:
    """Makes Redis servers of the module's own (to kill and restart); all are stopped after the module."""
    made: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(_redis_binary(), _free_port())
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.kill()
