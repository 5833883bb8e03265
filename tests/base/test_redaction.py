"""Keeping API keys out of text: every form a key takes in a message is replaced, in one place."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import uuid
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from nons.base import errors, redaction
from nons.base.redaction import (
    MIN_REDACTED_CHARS,
    REDACTED,
    RUN_CHARS,
    clean,
    clean_attributes,
    is_credential_name,
    redact,
    redact_json,
    register_secret,
)

# A key with characters that JSON, repr and URL encoding each write differently.
KEY = "sk-proj-Ab+c/d=Ef'Gh\\Ij0123456789"


def test_redact() -> None:
    assert redact("key sk-1-abcdefgh and sk-1-abcdefgh again", "sk-1-abcdefgh") == (
        "key [REDACTED] and [REDACTED] again"
    )
    assert redact("nothing to hide", None, "") == "nothing to hide"


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(KEY, id="as-is"),
        pytest.param(json.dumps(KEY)[1:-1], id="json-escaped"),
        pytest.param(repr(KEY)[1:-1], id="repr"),
        pytest.param(repr(KEY.encode())[2:-1], id="bytes-repr"),
        pytest.param(quote(KEY, safe=""), id="url-encoded"),
        pytest.param(quote_plus(KEY), id="url-encoded-plus"),
        pytest.param(f"{KEY[:7]}{'*' * 20}{KEY[-4:]}", id="prefix-and-tail-masked"),
        pytest.param(f"{KEY[:3]}...{KEY[-4:]}", id="short-prefix-dots-tail"),
        pytest.param(KEY[:RUN_CHARS + 3], id="truncated-head"),
        pytest.param(KEY[5 : 5 + RUN_CHARS], id="a-12-character-run"),
    ],
)
def test_every_form_of_a_registered_key_is_redacted(form: str) -> None:
    register_secret(KEY)
    text = redact(f"Illegal header value b'Bearer {form}\\n' (see docs)")
    assert REDACTED in text
    assert form not in text
    assert text.endswith("(see docs)")  # only the key goes, not the rest of the message
    for start in range(len(KEY) - RUN_CHARS + 1):
        assert KEY[start : start + RUN_CHARS] not in text


def test_a_key_in_a_message_becomes_one_marker_not_a_row_of_them() -> None:
    register_secret(KEY)
    assert redact(f"x {KEY}{KEY[:20]} y") == f"x {REDACTED} y"


def test_a_short_key_never_corrupts_text() -> None:
    # api_key="k" used to turn "tokens" into "to[REDACTED]ens", which broke the context-length classification.
    short = "k" * (MIN_REDACTED_CHARS - 1)
    register_secret("k")
    register_secret(short)
    text = "The input token count (1200000) exceeds the maximum number of tokens allowed. " + short
    assert redact(text, "k", short) == text


def test_redact_json_reaches_every_string_keys_included() -> None:
    register_secret(KEY)
    body = {"error": {"message": f"bad key {KEY}", KEY: [1, f"{KEY[:3]}***{KEY[-4:]}"]}}
    assert KEY[:RUN_CHARS] not in json.dumps(redact_json(body), ensure_ascii=False)


def test_every_nons_error_message_and_repr_pass_through_redaction() -> None:
    register_secret(KEY)
    error = errors.ProviderConnectionError(f"could not reach openai: Illegal header value b'Bearer {KEY}\\n'")
    wrapped = errors.NodeExecutionError(ValueError(f"raw {KEY}"), network="n", layer=0, node_id="x", operator="op")
    for text in (str(error), repr(error), str(wrapped), repr(wrapped), str(errors.ConfigurationError(KEY))):
        assert KEY[:RUN_CHARS] not in text and REDACTED in text


def test_clean_replaces_lone_surrogates_and_redacts() -> None:
    register_secret(KEY)
    assert clean("ok \ud800 text") == "ok \ufffd text"
    assert clean(f"a {KEY}") == f"a {REDACTED}"
    assert clean("plain") == "plain"
    assert clean("bad \udfff").encode("utf-8") == "bad \ufffd".encode()  # a cleaned string always encodes


def test_clean_attributes_cleans_strings_and_sequences_of_strings() -> None:
    register_secret(KEY)
    cleaned = clean_attributes({"a": f"k={KEY}", "b": ["x\ud83d", KEY], "n": 3, "f": 1.5, "t": True})
    assert cleaned == {"a": f"k={REDACTED}", "b": ("x\ufffd", REDACTED), "n": 3, "f": 1.5, "t": True}


@pytest.mark.parametrize(
    ("name", "credential"),
    [("api_key", True), ("x-api-key", True), ("apikey", True), ("auth_token", True), ("extra_headers", True),
     ("Authorization", True), ("client_secret", True), ("password", True), ("max_tokens", False),
     ("top_k", False), ("keyword", False), ("mock_seed", False), ("extra_body", False),
     # camelCase words (they were read as one word, and shown by nons check, GET /v1/networks and repr()):
     ("accessToken", True), ("clientSecret", True), ("authToken", True), ("refreshToken", True),
     ("privateKey", True), ("sessionToken", True), ("apiKey", True), ("xApiKey", True), ("dbpassword", True),
     ("maxTokens", False), ("topK", False), ("keyId", False)],
)  # fmt: skip
def test_is_credential_name_knows_a_credential_parameter_from_a_setting(name: str, credential: bool) -> None:
    assert is_credential_name(name) is credential


def test_a_text_cleaned_while_its_key_is_registered_is_never_served_unredacted_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another thread cleans the text with the matcher of before the key, and stores its result after the
    # registration emptied the cache: a later clean() must not find that result.
    key = f"sk-race-{uuid.uuid4().hex}"  # shares no 12-character run with another test's key
    text = f"model-{key}"
    original = redaction._redact_with
    computed, stored = threading.Event(), threading.Event()

    def paused(value: str, matcher: Any) -> str:
        result = original(value, matcher)
        if value == text and not computed.is_set():
            computed.set()
            assert stored.wait(10)
        return result

    monkeypatch.setattr(redaction, "_redact_with", paused)
    racing = concurrent.futures.ThreadPoolExecutor(1)
    before = racing.submit(clean, text)
    assert computed.wait(10)
    register_secret(key)
    stored.set()
    assert before.result(10) == text  # cleaned before the key was known
    racing.shutdown()
    assert clean(text) == f"model-{REDACTED}"


def test_a_key_per_tenant_is_redacted_in_every_form_however_many_there_are() -> None:
    # Past a few keys a text is no longer searched for each needle but looked up by its own short runs: every
    # key, in every form a message takes, is still found. (One pattern of every key, rebuilt at each new key,
    # cost 294 ms a registration at 400 keys and stalled the event loop; each key has its own now.)
    keys = [f"sk-tenant-{uuid.uuid4().hex}" for _ in range(60)]
    for key in keys:
        register_secret(key)
    assert len(redaction._matcher.by_needle) > redaction._SCAN_NEEDLES  # the lookup path
    for key in keys[::7]:
        for text in (
            f"Incorrect API key provided: {key}.",
            f'{{"error": {json.dumps(key)}}}',
            f"key={quote(key, safe='')}&x=1",
            f"masked {key[:6]}****{key[-4:]} here",
            f"cut short: {key[5:5 + RUN_CHARS]}",
        ):
            cleaned = clean(text)
            assert key not in cleaned and key[-8:] not in cleaned and REDACTED in cleaned, cleaned
    assert clean("no key in this text at all, only words") == "no key in this text at all, only words"


@pytest.mark.timeout(30)
def test_a_text_crafted_around_a_keys_masked_form_is_redacted_in_linear_time() -> None:
    # Runs of the key's first characters and dots could be split every way between the masked form's parts: some
    # 50 µs a character, so this 400,000-character text took some 20 s (it now takes milliseconds).
    # A key with a mask character of its own (a JWT's dots) took as long after the first fix.
    for key in ("sk-ant-api03-" + uuid.uuid4().hex * 3, "eyJhbGciOi." + uuid.uuid4().hex * 2 + "." + uuid.uuid4().hex):
        register_secret(key)
        crafted = (key[:3] + "." * 60) * 6_300 + key[-4:]
        # The one masked form: its last prefix, dots and tail.
        assert clean(crafted) == crafted[: -(3 + 60 + 4)] + REDACTED
        assert clean(f"bad key {key[:7]}....{key[-4:]}") == f"bad key {REDACTED}"
