"""Which structured-output requests llama.cpp's server honours, asked directly with the openai SDK. Asserts nothing.

    python bench/probe_response_format.py [--runs 10] [--temperature 0.7] [--dialects NAME ...]
                                          [--chat-template Qwen-Qwen2.5-7B-Instruct]

Starts llama-server with SmolLM2-135M-Instruct (build it first with scripts/llama-server) and sends the same
classification request in each dialect an OpenAI-compatible server may understand:

- ``prompt``: the JSON Schema only in the system prompt (what NoN's operators do today);
- ``json_object``: ``response_format={"type": "json_object"}``, schema in the prompt only;
- ``json_object+schema``: ``{"type": "json_object", "schema": {...}}`` (llama.cpp, vLLM, Anyscale);
- ``json_schema``: ``{"type": "json_schema", "json_schema": {"name", "strict", "schema"}}`` (OpenAI's own);
- ``tool_required`` / ``tool_named``: one function whose parameters are the schema, with ``tool_choice``
  ``"required"`` or naming the function (a "forced tool", the Anthropic way).

For each it prints whether the server accepted the request, how many answers were JSON that validates against the
schema (``jsonschema``), one example answer (a valid one when there is one), and why the others were invalid.
``--chat-template`` starts the server with one of llama.cpp's chat templates instead of SmolLM2's own, which
declares no tool support (so the server ignores ``tools``); Qwen2.5's is ChatML like SmolLM2's and has tools.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import jsonschema
import openai

from nons.testing import LlamaServer, locate_llama_server

CATEGORIES = ["positive", "negative", "neutral"]
#: The schema NoN's ``classify`` operator asks for.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": CATEGORIES},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string"},
    },
    "required": ["category", "confidence", "reasoning"],
}
TEXT = "I loved this film: the acting was wonderful and the ending made me smile."
PLAIN_INSTRUCTION = f"Classify the user's text into exactly one of: {', '.join(CATEGORIES)}."
PROMPT_INSTRUCTION = (
    f"{PLAIN_INSTRUCTION}\nAnswer with a single JSON object and nothing else. "
    f"It must follow this JSON Schema: {json.dumps(SCHEMA)}"
)
TOOL = {
    "type": "function",
    "function": {"name": "classification", "description": "Record the class.", "parameters": SCHEMA},
}

#: dialect -> (system prompt, extra request parameters)
DIALECTS: dict[str, tuple[str, dict[str, Any]]] = {
    "prompt": (PROMPT_INSTRUCTION, {}),
    "json_object": (PROMPT_INSTRUCTION, {"response_format": {"type": "json_object"}}),
    "json_object+schema": (PLAIN_INSTRUCTION, {"response_format": {"type": "json_object", "schema": SCHEMA}}),
    "json_schema": (
        PLAIN_INSTRUCTION,
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "classification", "strict": True, "schema": SCHEMA},
            }
        },
    ),
    "tool_required": (PLAIN_INSTRUCTION, {"tools": [TOOL], "tool_choice": "required"}),
    "tool_named": (
        PLAIN_INSTRUCTION,
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "classification"}}},
    ),
}


def answer_of(completion: Any) -> str:
    """The structured part of a completion: the first tool call's arguments, else the message text."""
    message = completion.choices[0].message
    if message.tool_calls:
        return str(message.tool_calls[0].function.arguments)
    return str(message.content or "")


def problem(text: str, finish_reason: str | None) -> str:
    """Why an answer does not validate against the schema ("" when it does): short, to be counted."""
    try:
        value = json.loads(text)
    except ValueError:
        return "cut at max_tokens" if finish_reason == "length" else "not JSON"
    try:
        jsonschema.validate(value, SCHEMA)
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return f"{where}: {error.validator}"
    return ""


def probe(client: openai.OpenAI, model: str, dialect: str, runs: int, temperature: float) -> dict[str, Any]:
    system, extra = DIALECTS[dialect]
    valid, example, refused = 0, "", ""
    problems: Counter[str] = Counter()
    for _ in range(runs):
        try:
            completion = client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": TEXT}],
                temperature=temperature,
                max_tokens=256,
                **extra,
            )
        except openai.APIStatusError as error:
            refused = f"HTTP {error.status_code}: {error.message}"
            break
        text = answer_of(completion)
        found = problem(text, completion.choices[0].finish_reason)
        if found:
            problems[found] += 1
        else:
            valid += 1
        if not example or (not found and problem(example, None)):
            example = text
    return {
        "dialect": dialect,
        "accepted": not refused,
        "refused": refused,
        "valid": valid,
        "runs": runs,
        "example": example,
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--dialects", nargs="+", choices=list(DIALECTS), default=list(DIALECTS))
    parser.add_argument("--chat-template", help="a template name from llama.cpp's models/templates")
    args = parser.parse_args()
    build = locate_llama_server()
    template = None
    if args.chat_template:
        if build.chat_templates is None:
            parser.error("this build has no chat templates: rebuild it with scripts/llama-server")
        template = build.chat_templates / f"{args.chat_template}.jinja"
    with LlamaServer(build, chat_template_file=template) as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-local-no-key-needed", max_retries=0)
        print(f"server: {' '.join(server.command)}\n")
        print(f"{'dialect':<20} {'accepted':<9} {'valid JSON per schema':<22} example answer")
        for dialect in args.dialects:
            row = probe(client, server.model, dialect, args.runs, args.temperature)
            rate = f"{row['valid']}/{row['runs']}" if row["accepted"] else "-"
            shown = row["refused"] or " ".join(row["example"].split())[:160]
            print(f"{dialect:<20} {'yes' if row['accepted'] else 'no':<9} {rate:<22} {shown}")
            if row["problems"]:
                found = ", ".join(f"{name} x{count}" for name, count in row["problems"].most_common())
                print(f"{'':<20} {'':<9} {'invalid:':<22} {found}")


if __name__ == "__main__":
    main()
