"""Keeping API keys out of text: the one place where a secret is replaced by ``[REDACTED]``.

A vendor's error can quote the key back (in its message or its JSON body), and an SDK's exception can hold it.
Every text that may carry a key passes through :func:`redact` (or :func:`redact_json` for a parsed body)
before it reaches an error message. This module is a leaf of :mod:`nons.base`, so every layer that turns
foreign text into a NoN signal (providers today; span status, events and log records may follow) uses the
same rule.
"""

from __future__ import annotations

__all__ = ["REDACTED", "redact", "redact_json"]

#: What a secret is replaced with.
REDACTED = "[REDACTED]"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def redact_json(value: object, *secrets: str | None) -> object:
    """``value`` (parsed JSON) with the secrets redacted from every string in it, keys included."""
    if isinstance(value, str):
        return redact(value, *secrets)
    if isinstance(value, dict):
        return {redact(str(k), *secrets): redact_json(v, *secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, *secrets) for v in value]
    return value
