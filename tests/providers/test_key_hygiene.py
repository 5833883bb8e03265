"""Keys as people really set them: with a trailing newline or space, malformed, or far too short.

A key is stripped when it is read (with one warning), a key that cannot be an HTTP header value is a
ConfigurationError naming its variable before anything is sent, and a key too short to be one is refused, while
one just too short to be worth redacting never corrupts a message.
"""

from __future__ import annotations

import http.server
import logging
import threading
import urllib.parse

import pytest
from provider_cases import CASES, Case

from nons.base.errors import ConfigurationError, ContextLengthError, NodeExecutionError
from nons.base.keys import MIN_KEY_CHARS
from nons.base.redaction import MIN_REDACTED_CHARS
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig
from nons.testing import Fault, ProviderEmulator, Reply

KEY = "sk-LEAKCHECK-0123456789abcdef"
RETRY = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=3, retry_base_delay=0.001)


def network(case: Case, emu: ProviderEmulator, **config: object) -> NoN:
    model = ModelConfig(provider=case.provider, model_name=case.model, base_url=emu.base_url_for(case.name), **config)
    return NoN([_layer(Node("generate", model))], layer_config=RETRY)


def _layer(node: Node) -> object:
    from nons.core.layer import Layer

    return Layer([node])


def runs_of_the_key(text: str, key: str = KEY) -> list[str]:
    return [key[i : i + 12] for i in range(len(key) - 11) if key[i : i + 12] in text]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("suffix", ["\n", " ", "\r\n", "\t"], ids=["newline", "space", "crlf", "tab"])
async def test_a_key_with_trailing_whitespace_is_stripped_and_never_leaks(
    case: Case, suffix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(case.env, KEY + suffix)
    caplog.set_level(logging.WARNING, logger="nons")
    with ProviderEmulator() as emu:
        # The emulator's invalid-key answer quotes the key back, as Gemini's does.
        emu.script(case.name, [Fault.auth()])
        with pytest.raises(NodeExecutionError) as caught:
            await network(case, emu).run("hi")
        sent = [r.headers for r in emu.requests_for(case.name)]
    assert len(sent) == 1  # sent once, stripped; an authentication error is not retried
    assert any(v == KEY or v == f"Bearer {KEY}" for v in sent[0].values())
    text = f"{caught.value} {caught.value!r} {caught.value.cause}"
    assert caught.value.error_type == "authentication_error"
    assert runs_of_the_key(text) == [], text
    warnings = [r.getMessage() for r in caplog.records if "whitespace" in r.getMessage()]
    assert warnings and case.env in warnings[0] and KEY not in warnings[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize(
    "bad", [KEY[:10] + "\n" + KEY[10:], KEY[:10] + " " + KEY[10:], KEY + "é", KEY[:5] + "\x01" + KEY[5:]],
    ids=["inner-newline", "inner-space", "non-ascii", "control"],
)
async def test_a_key_that_cannot_be_a_header_value_is_a_configuration_error_naming_the_variable(
    case: Case, bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(case.env, bad)
    with ProviderEmulator() as emu:
        with pytest.raises(NodeExecutionError) as caught:
            await network(case, emu).run("hi")
        assert emu.requests_for(case.name) == []  # nothing sent, and not retried as a connection error
    cause = caught.value.cause
    assert isinstance(cause, ConfigurationError)
    assert case.env in str(cause)
    assert runs_of_the_key(str(caught.value), bad.replace("\n", "").replace(" ", "")) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_malformed_key_in_the_model_config_names_the_config_field(case: Case) -> None:
    with ProviderEmulator() as emu:
        with pytest.raises(NodeExecutionError) as caught:
            await network(case, emu, api_key=KEY[:8] + "\n" + KEY[8:]).run("hi")
        assert emu.requests == []
    assert isinstance(caught.value.cause, ConfigurationError)
    assert "ModelConfig.api_key" in str(caught.value.cause)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("key", ["k", "ab"])
async def test_an_obviously_bogus_key_is_refused_with_a_clear_error(
    case: Case, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(key) < MIN_KEY_CHARS
    monkeypatch.setenv(case.env, key)
    with ProviderEmulator() as emu:
        with pytest.raises(NodeExecutionError) as caught:
            await network(case, emu).run("hi")
        assert emu.requests == []
    cause = caught.value.cause
    assert isinstance(cause, ConfigurationError)
    assert case.env in str(cause) and "not an API key" in str(cause)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_short_key_does_not_corrupt_messages_or_their_classification(case: Case) -> None:
    # "oken" is a key a local server might accept, too short to redact: "tokens" stays "tokens".
    short = "oken"
    assert MIN_KEY_CHARS <= len(short) < MIN_REDACTED_CHARS
    with ProviderEmulator() as emu:
        emu.script(case.name, [Fault.context_length()])
        with pytest.raises(NodeExecutionError) as caught:
            await network(case, emu, api_key=short).run("hi")
    assert isinstance(caught.value.cause, ContextLengthError)
    assert "[REDACTED]" not in str(caught.value)


async def test_a_stripped_key_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[1]
    monkeypatch.setenv(case.env, f"  {KEY}\n")
    with ProviderEmulator() as emu:
        emu.script(case.name, [Reply(text="Paris.")])
        assert await network(case, emu).forward("hi") == "Paris."


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Answers every request with a 307 to the same path at ``target`` (another origin)."""

    target = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(307)
        self.send_header("location", self.target + self.path)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_redirect_to_another_host_never_carries_the_key(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(case.env, KEY)
    with ProviderEmulator() as emu:
        emulated = urllib.parse.urlsplit(emu.base_url_for(case.name))
        handler = type("Redirector", (_Redirector,), {"target": f"{emulated.scheme}://{emulated.netloc}"})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            model = ModelConfig(
                provider=case.provider, model_name=case.model,
                base_url=f"http://127.0.0.1:{server.server_address[1]}{emulated.path}",
            )
            try:
                await NoN([_layer(Node("generate", model))]).run("hi")
            except NodeExecutionError as error:  # Gemini's client does not follow it, and says where it pointed
                assert case.name == "google" and "does not follow" in str(error.cause), error.cause
                assert emulated.netloc in str(error.cause)
        finally:
            server.shutdown()
            server.server_close()
        received = [r.headers for r in emu.requests_for(case.name)]
    assert all(runs_of_the_key(value) == [] for headers in received for value in headers.values()), received
