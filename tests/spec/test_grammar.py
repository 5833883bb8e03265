"""The node shorthand: ``[COUNT x] OPERATOR[@MODEL]``."""

from __future__ import annotations

import pytest

from nons.spec.grammar import NodeShorthand, ShorthandError, parse_model_ref, parse_node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generate", NodeShorthand("generate")),
        ("generate@openai/gpt-4o-mini", NodeShorthand("generate", 1, "openai/gpt-4o-mini")),
        ("5 x generate@openai/gpt-4o-mini", NodeShorthand("generate", 5, "openai/gpt-4o-mini")),
        ("5x generate", NodeShorthand("generate", 5)),
        ("5 X generate", NodeShorthand("generate", 5)),
        ("3×classify@judge", NodeShorthand("classify", 3, "judge")),
        ("3 * classify @ judge", NodeShorthand("classify", 3, "judge")),
        ("  2 x extract_winners  ", NodeShorthand("extract_winners", 2)),
        # A model name may itself hold "/": only the first one separates the provider.
        ("generate@openai/meta-llama/Llama-3.1-8B", NodeShorthand("generate", 1, "openai/meta-llama/Llama-3.1-8B")),
        # An operator that starts with x is not read as the times sign.
        ("2 x xform", NodeShorthand("xform", 2)),
    ],
)
def test_shorthands_that_parse(text: str, expected: NodeShorthand) -> None:
    assert parse_node(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not a node"),
        ("0 x generate", "must be 1 or more"),
        ("5xgenerate", "is not an operator name"),
        ("x 5 generate", "is not a node"),
        ("gen-erate", "is not an operator name"),
        ("generate@", "is not a node"),
        ("generate@/gpt-4o", "must be 'provider/model'"),
        ("generate@openai/", "must be 'provider/model'"),
        ("generate@fa$t", "neither 'provider/model'"),
        ("generate@a b", "is not a node"),
    ],
)
def test_shorthands_that_do_not_parse_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ShorthandError) as raised:
        parse_node(text)
    assert says in str(raised.value)


def test_model_references_split_into_provider_and_name_or_an_alias() -> None:
    assert parse_model_ref("anthropic/claude-sonnet-4-6") == ("anthropic", "claude-sonnet-4-6")
    assert parse_model_ref("fast") == (None, "fast")

