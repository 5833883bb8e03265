"""Keeping API keys out of text."""

from __future__ import annotations

from nons.base.redaction import redact


def test_redact() -> None:
    assert redact("key sk-1 and sk-1 again", "sk-1") == "key [REDACTED] and [REDACTED] again"
    assert redact("nothing to hide", None, "") == "nothing to hide"
