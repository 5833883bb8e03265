"""The provider emulator on its own, spoken to with plain httpx."""

from __future__ import annotations

import json

import httpx
import pytest

from nons.core.types import ModelProvider
from nons.testing import EmulatedToolCall, Fault, ProviderEmulator, Reply
from nons.testing.answers import TRICKLE_PIECES
from nons.testing.dialects import DIALECTS


def test_records_requests_and_answers_in_script_order(emu: ProviderEmulator) -> None:
    emu.script("openai", [Reply(text="one"), Fault.server_error(503), Reply(text="three")])
    url = emu.base_url_for("openai") + "/chat/completions"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client() as client:
        answers = [client.post(url, json=body, headers={"Authorization": "Bearer k"}) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 503, 200, 200]
    assert answers[0].json()["choices"][0]["message"]["content"] == "one"
    assert answers[2].json()["choices"][0]["message"]["content"] == "three"
    assert answers[3].json()["choices"][0]["message"]["content"] == "Hello from the provider emulator."
    recorded = emu.requests_for("openai")
    assert len(recorded) == 4
    assert recorded[0].body == body
    assert recorded[0].headers["authorization"] == "Bearer k"
    assert recorded[0].path == "/v1/chat/completions"
    assert emu.pending("openai") == 0


def test_routes_each_wire_format(emu: ProviderEmulator) -> None:
    with httpx.Client() as client:
        anthropic = client.post(emu.base_url_for("anthropic") + "/v1/messages", json={"model": "claude-x"})
        gemini = client.post(emu.base_url_for("google") + "/v1beta/models/gemini-x:generateContent", json={})
        unknown = client.post(emu.base_url_for("google") + "/v2/whatever", json={})
    assert anthropic.json()["type"] == "message"
    assert anthropic.json()["model"] == "claude-x"
    assert gemini.json()["modelVersion"] == "gemini-x"
    assert unknown.status_code == 404
    assert [r.provider for r in emu.requests] == ["anthropic", "google", None]


def test_usage_in_each_wire_format(emu: ProviderEmulator) -> None:
    reply = Reply(input_tokens=100, output_tokens=10, cache_read_tokens=30, cache_write_tokens=20)
    for name in ("openai", "anthropic", "google"):
        emu.script(name, [reply])
    with httpx.Client() as client:
        openai = client.post(emu.base_url_for("openai") + "/chat/completions", json={"model": "m"}).json()
        anthropic = client.post(emu.base_url_for("anthropic") + "/v1/messages", json={"model": "m"}).json()
        gemini = client.post(emu.base_url_for("google") + "/v1beta/models/m:generateContent", json={}).json()
    assert openai["usage"]["prompt_tokens"] == 100
    assert openai["usage"]["prompt_tokens_details"] == {"cached_tokens": 30, "cache_write_tokens": 20}
    assert anthropic["usage"] == {
        "input_tokens": 50,
        "output_tokens": 10,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 20,
    }
    assert gemini["usageMetadata"]["promptTokenCount"] == 100
    assert gemini["usageMetadata"]["cachedContentTokenCount"] == 30


def test_tool_calls_in_each_wire_format(emu: ProviderEmulator) -> None:
    reply = Reply(text="", tool_calls=[EmulatedToolCall("lookup", {"q": "x"}, id="call_1")])
    for name in ("openai", "anthropic", "google"):
        emu.script(name, [reply])
    with httpx.Client() as client:
        openai = client.post(emu.base_url_for("openai") + "/chat/completions", json={"model": "m"}).json()
        anthropic = client.post(emu.base_url_for("anthropic") + "/v1/messages", json={"model": "m"}).json()
        gemini = client.post(emu.base_url_for("google") + "/v1beta/models/m:generateContent", json={}).json()
    assert openai["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    ]
    assert anthropic["content"] == [{"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "x"}}]
    assert gemini["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "lookup", "args": {"q": "x"}, "id": "call_1"}}
    ]


def test_dropped_connection_sends_nothing(emu: ProviderEmulator) -> None:
    emu.script("anthropic", [Fault.drop_connection()])
    with httpx.Client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.post(emu.base_url_for("anthropic") + "/v1/messages", json={"model": "m"})


def test_a_trickled_answer_arrives_whole_in_pieces_that_far_apart(emu: ProviderEmulator) -> None:
    emu.script("openai", [Fault.trickled(0.05, Reply(text="slowly"))])
    url = emu.base_url_for("openai") + "/chat/completions"
    pieces: list[bytes] = []
    with httpx.Client() as client, client.stream("POST", url, json={"model": "m", "messages": []}) as answer:
        pieces.extend(answer.iter_raw())
    # Read as they came: apart, unless the reader fell that far behind (a busy machine may join a few).
    assert 1 < len(pieces) <= TRICKLE_PIECES
    assert json.loads(b"".join(pieces))["choices"][0]["message"]["content"] == "slowly"


def test_unknown_provider_is_refused(emu: ProviderEmulator) -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        emu.script("mistral", [Reply()])


def test_clear_forgets_requests_and_scripts(emu: ProviderEmulator) -> None:
    emu.script("google", [Reply(), Reply()])
    with httpx.Client() as client:
        client.post(emu.base_url_for("google") + "/v1beta/models/m:generateContent", json={})
    emu.clear()
    assert emu.requests == []
    assert emu.pending("google") == 0


@pytest.mark.parametrize(
    ("provider", "path", "headers"),
    [
        ("openai", "/chat/completions", {"Authorization": "Bearer sk-quoted-1"}),
        ("anthropic", "/v1/messages", {"x-api-key": "sk-quoted-1"}),
        ("anthropic", "/v1/messages", {"Authorization": "Bearer sk-quoted-1"}),  # how the 2.x SDK sends it
        ("google", "/v1beta/models/m:generateContent", {"x-goog-api-key": "sk-quoted-1"}),
        ("google", "/v1beta/models/m:generateContent?key=sk-quoted-1", {}),
    ],
)
def test_an_invalid_key_answer_quotes_the_key_the_request_carried(
    emu: ProviderEmulator, provider: str, path: str, headers: dict[str, str]
) -> None:
    # The key-leak tests rely on this: the emulator's 401 quotes the key back, as a careless server might.
    emu.script(provider, [Fault.auth()])
    with httpx.Client() as client:
        answer = client.post(emu.base_url_for(provider) + path, json={"model": "m"}, headers=headers)
    assert answer.status_code == (400 if provider == "google" else 401)
    assert "sk-quoted-1" in answer.json()["error"]["message"]


def test_the_emulator_speaks_every_vendor_provider() -> None:
    vendors = {p.value for p in ModelProvider if p is not ModelProvider.MOCK}
    assert set(DIALECTS) == vendors
    assert all(name == dialect.name for name, dialect in DIALECTS.items())


def test_structured_output_fields_are_read_and_checked_as_each_vendor_does(emu: ProviderEmulator) -> None:
    open_object = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    closed_object = {**open_object, "additionalProperties": False}
    emu.script("openai", [Reply(text='{"a": "x"}')])
    openai_url = emu.base_url_for("openai") + "/chat/completions"
    anthropic_url = emu.base_url_for("anthropic") + "/v1/messages"
    gemini_url = emu.base_url_for("google") + "/v1beta/models/g:generateContent"
    messages = [{"role": "user", "content": "hi"}]

    def strict(schema: dict[str, object]) -> dict[str, object]:
        spec = {"name": "answer", "schema": schema, "strict": True}
        return {"model": "m", "messages": messages, "response_format": {"type": "json_schema", "json_schema": spec}}

    with httpx.Client() as client:
        open_strict = client.post(openai_url, json=strict(open_object))
        json_mode_without_the_word = client.post(
            openai_url, json={"model": "m", "messages": messages, "response_format": {"type": "json_object"}}
        )
        closed_strict = client.post(openai_url, json=strict(closed_object))
        ranged = {"type": "number", "minimum": 0}
        anthropic_ranged = client.post(
            anthropic_url,
            json={"model": "c", "output_config": {"format": {"type": "json_schema", "schema": ranged}}},
        )
        gemini_schema_without_mime = client.post(
            gemini_url, json={"generationConfig": {"responseJsonSchema": closed_object}}
        )
        gemini_json = client.post(
            gemini_url,
            json={"generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": open_object}},
        )

    assert open_strict.status_code == 400
    assert "'additionalProperties' is required to be supplied and to be false" in open_strict.json()["error"]["message"]
    assert json_mode_without_the_word.status_code == 400
    assert "must contain the word 'json'" in json_mode_without_the_word.json()["error"]["message"]
    # A refused request never reaches the model: the scripted answer is still there for the valid one.
    assert closed_strict.json()["choices"][0]["message"]["content"] == '{"a": "x"}'
    assert anthropic_ranged.status_code == 400
    assert anthropic_ranged.json()["error"]["type"] == "invalid_request_error"
    assert gemini_schema_without_mime.status_code == 400
    assert gemini_json.status_code == 200
    formats = [r.output_format for r in emu.requests]
    assert formats[:2] == [None, None]
    assert formats[2] is not None and formats[2].strict and formats[2].schema == closed_object
    assert formats[5] is not None and formats[5].kind == "json_schema" and formats[5].schema == open_object


def test_a_compatible_server_that_does_not_know_a_form_refuses_it() -> None:
    spec = {"name": "answer", "schema": {"type": "object"}}
    body = {"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": spec}}
    with ProviderEmulator(refuse_formats={"json_schema"}) as emu, httpx.Client() as client:
        refused = client.post(emu.base_url_for("openai") + "/chat/completions", json=body)
        plain = client.post(emu.base_url_for("openai") + "/chat/completions", json={"model": "m", "messages": []})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "response_format type 'json_schema' is not supported by this server"
    assert plain.status_code == 200
