"""The secrets grep: fake keys for all three vendors, in every malformed form a key arrives in, through networks
and agents against the emulator with 401, 429, 500 and connection errors, content capture on and off. Every
span, event, log record (DEBUG included, bridged to OpenTelemetry and as Python formats it), exception message
and repr, and the output of ``nons demo``, is collected and searched for the key, its stripped form and any
12-character run of it: zero hits."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from otel_harness import LogCapture, Telemetry

from nons.core.agents import Agent, ToolRegistry
from nons.core.layer import Layer
from nons.core.network import NoN
from nons.core.node import Node
from nons.core.types import ErrorPolicy, LayerConfig, ModelConfig, ModelProvider
from nons.observability.integration import get_observability
from nons.testing import Fault, ProviderEmulator, Reply

RUN = 12
KEYS = {
    "OPENAI_API_KEY": "sk-proj-GREPcheck+openai/0123456789abcdefXYZ",
    "ANTHROPIC_API_KEY": "sk-ant-api03-GREPcheck-anthropic-0123456789abcdef",
    "GOOGLE_API_KEY": "AIzaSyGREPcheck-google_0123456789abcdef",
}
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "google": "gemini-2.0-flash"}
VARIABLE = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "google": "GOOGLE_API_KEY"}
# Every way a key arrived malformed: whitespace around it (stripped and used), and inside it (refused).
FORMS = {
    "newline": lambda k: k + "\n",
    "space": lambda k: k + " ",
    "crlf": lambda k: k + "\r\n",
    "tab": lambda k: k + "\t",
    "leading": lambda k: "  " + k,
    "inner-newline": lambda k: k[:14] + "\n" + k[14:],
    "inner-space": lambda k: k[:14] + " " + k[14:],
    "non-ascii": lambda k: k + "é",
}


def needles(raw: str) -> set[str]:
    """What must appear nowhere: the key as set, stripped, and every 12-character run of its parts."""
    stripped = raw.strip()
    found = {raw, stripped}
    for part in stripped.replace("\n", " ").split():
        found.update(part[i : i + RUN] for i in range(len(part) - RUN + 1))
    return {n for n in found if len(n) >= RUN}


def span_texts(span: ReadableSpan) -> list[str]:
    texts = [span.name, str(span.status.description or ""), repr(span.attributes)]
    for event in span.events:
        texts += [event.name, repr(event.attributes)]
    return texts


def error_texts(error: BaseException | None) -> list[str]:
    texts: list[str] = []
    while error is not None:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        error = error.__cause__ or error.__context__
    return texts


async def run_everything(emu: ProviderEmulator, raw_keys: dict[str, str]) -> list[str]:
    """Networks and agents against every fault; the texts of every result and error they produced."""
    texts: list[str] = []
    for provider in MODELS:
        emu.script(
            provider,
            [
                Fault.rate_limit(retry_after_ms="1"),
                Fault.server_error(),
                Fault.drop_connection(),
                Reply(text="fine"),
                Fault.auth(),
            ],
        )
    retry = LayerConfig(error_policy=ErrorPolicy.RETRY_WITH_BACKOFF, max_retries=3, retry_base_delay=0.001)

    def config(provider: str, **extra: Any) -> ModelConfig:
        return ModelConfig(
            provider=ModelProvider(provider), model_name=MODELS[provider], base_url=emu.base_url_for(provider), **extra
        )

    per_node_key = config("openai", api_key=raw_keys["openai"])  # a key in the config, in the same form
    network = NoN(
        [
            Layer([Node("generate", config(p)) for p in MODELS], retry),
            Layer([Node("generate", config(p)) for p in MODELS] + [Node("generate", per_node_key)],
                  LayerConfig(error_policy=ErrorPolicy.SKIP_AND_CONTINUE)),
        ]
    )
    for _ in range(2):
        try:
            result = await network.run("What is the capital of France?")
            texts += [repr(result.output), repr(result.node_results)]
            texts += [t for n in result.node_results for t in error_texts(n.error)]
        except Exception as error:
            texts += error_texts(error)
    for provider in MODELS:
        emu.script(provider, [Fault.auth()])
        agent = Agent(config(provider), ToolRegistry(), name=f"grep-{provider}", max_llm_retry=1)
        try:
            final = await agent.run("Say hi.")
            texts += [repr(final)]
        except Exception as error:
            texts += error_texts(error)
    return texts


@pytest.mark.timeout(180)
@pytest.mark.parametrize("capture", [True, False], ids=["capture-on", "capture-off"])
@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
async def test_no_key_in_any_signal_message_or_log(
    otel: Telemetry,
    otel_logs: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    form: Any,
    capture: bool,
) -> None:
    raw_keys = {provider: form(KEYS[VARIABLE[provider]]) for provider in MODELS}
    for provider, raw in raw_keys.items():
        monkeypatch.setenv(VARIABLE[provider], raw)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true" if capture else "false")
    caplog.set_level(logging.DEBUG)  # the SDKs' and httpx2's DEBUG records too
    observability = get_observability()

    with ProviderEmulator() as emu:
        texts = await run_everything(emu, raw_keys)
        sent = " ".join(v for r in emu.requests for v in r.headers.values())

    spans = otel.spans()
    assert spans, "no span was recorded"
    for span in spans:
        texts += span_texts(span)
    for readable in otel_logs.records():
        texts += [str(readable.log_record.body), repr(readable.log_record.attributes)]
    data = observability.export_all_data()
    texts += [repr(data["spans"]), repr(data["logs"])]
    texts += [logging.Formatter().format(record) for record in caplog.records]
    texts.append(caplog.text)
    usable = raw_keys["openai"].strip() == KEYS["OPENAI_API_KEY"]  # whitespace around it, not inside
    if usable:
        assert len(caplog.records) > 10  # DEBUG logging really ran (the SDKs log nothing when nothing is sent)

    haystack = "\n".join(texts)
    for raw in raw_keys.values():
        for needle in needles(raw):
            assert needle not in haystack, f"{needle!r} leaked: ...{_around(haystack, needle)}..."
    if usable:
        assert KEYS["OPENAI_API_KEY"] in sent  # the stripped key was really sent


def _around(haystack: str, needle: str) -> str:
    at = haystack.find(needle)
    return haystack[max(0, at - 200) : at + 200]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("form", ["newline", "inner-space"])
def test_nons_demo_output_holds_no_key(form: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NON_"))}
    raw_keys = {variable: FORMS[form](key) for variable, key in KEYS.items()}
    env.update(raw_keys)
    env.update({"NON_LOG_LEVEL": "DEBUG", "OTEL_LOGS_EXPORTER": "console", "OTEL_TRACES_EXPORTER": "console"})
    done = subprocess.run(
        [sys.executable, "-m", "nons.cli", "demo", "Is this safe?"], env=env, capture_output=True, text=True,
        timeout=170, check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Answer" in done.stdout
    for raw in raw_keys.values():
        for needle in needles(raw):
            assert needle not in output, f"{needle!r} leaked: ...{_around(output, needle)}..."
