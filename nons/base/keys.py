"""What an API key must look like before NoN uses it.

Keys are copied from consoles and written to files with ``echo``, so they arrive with a trailing newline or
space. :func:`read_key` strips them where they are read (and says so once per source: a key that only works
stripped is worth fixing at its source), and registers the key with :mod:`nons.base.redaction` so that no
message, span or log record can show it. :func:`check_key` refuses, before anything is sent, a key that cannot
travel in an HTTP header (the HTTP library's own error quotes the whole header, key included, and used to be
retried as a connection failure) and one that is obviously not a key.
"""

from __future__ import annotations

import logging
import threading

from nons.base.errors import ConfigurationError
from nons.base.redaction import MIN_REDACTED_CHARS, register_secret

__all__ = ["MIN_KEY_CHARS", "check_key", "read_key"]

logger = logging.getLogger("nons.keys")

#: Shorter keys are refused: no service issues one (``k``, ``-``). Local servers' placeholders such as
#: ``none``, ``EMPTY`` or ``ollama`` are accepted (they are below :data:`MIN_REDACTED_CHARS`, so not redacted).
MIN_KEY_CHARS = 4

_warned: set[str] = set()
_warned_lock = threading.Lock()


def read_key(value: str | None, source: str) -> str | None:
    """``value`` as a key: stripped of surrounding whitespace (warning once for ``source``, the variable or field
    it came from), ``None`` when nothing is left, and registered for redaction."""
    if value is None:
        return None
    stripped = value.strip()
    if stripped != value:
        register_secret(stripped)  # before the warning is written, whatever handler formats it
        # Once per source and value: every read must not warn again, but a new value is news.
        _warn_once(
            f"{source}:{hash(value)}",
            f"{source} has whitespace around the key (a newline from echo, or a copied line?); "
            "NoN uses it stripped: strip it where it is set",
        )
    if not stripped:
        return None
    register_secret(stripped)
    return stripped


def check_key(key: str, source: str) -> str:
    """``key`` when it can be sent: raise :class:`ConfigurationError` naming ``source`` (never the key) when it
    holds a character an HTTP header cannot carry, or is shorter than :data:`MIN_KEY_CHARS`."""
    for index, char in enumerate(key):
        if not "\x21" <= char <= "\x7e":
            what = (
                "whitespace"
                if char.isspace()
                else "a non-ASCII character"
                if ord(char) > 0x7E
                else ("a control character")
            )
            raise ConfigurationError(
                f"{source} holds {what} at position {index + 1}: an API key is printable ASCII without spaces, "
                "and this one cannot be sent in an HTTP header (check how it was copied)"
            )
    if len(key) < MIN_KEY_CHARS:
        raise ConfigurationError(
            f"{source} is {len(key)} character(s) long: that is not an API key (a server that needs no key needs "
            f"no {source} either; unset it)"
        )
    if len(key) < MIN_REDACTED_CHARS:
        _warn_once(
            f"short:{source}",
            f"{source} is shorter than {MIN_REDACTED_CHARS} characters, like a local server's placeholder: "
            "NoN does not redact so short a key from messages",
        )
    return key


def _warn_once(topic: str, message: str) -> None:
    """Log ``message`` the first time ``topic`` comes up in this process."""
    with _warned_lock:
        if topic in _warned:
            return
        _warned.add(topic)
    logger.warning(message)
