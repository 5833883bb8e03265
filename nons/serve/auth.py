"""Callers and their bearer tokens.

Tokens come from ``NON_SERVE_TOKENS`` and/or a file (``NON_SERVE_TOKENS_FILE``, ``--tokens-file``), as
``caller:token`` entries (one a line in a file, or separated by commas), so that limits and logs can name the
caller without ever showing a token. A bare token is named after a digest of it. Only digests are kept, and a
presented token is compared with each of them in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nons.core.types import ConfigurationError

__all__ = ["MIN_TOKEN_CHARS", "Caller", "TokenTable"]

#: Shorter tokens are refused: 16 random URL-safe characters are 96 bits.
MIN_TOKEN_CHARS = 16
_CALLER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")  # \Z: "$" also matches before a final newline
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Caller:
    """Who made a request: the name its token was given (or, without authentication, its address)."""

    id: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """The accepted tokens, by digest, with the caller each one stands for."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._callers: list[tuple[bytes, Caller]] = []
        for caller, token in entries:
            self.add(caller, token)

    def add(self, caller: str, token: str) -> None:
        if not _CALLER.match(caller):
            # Not echoed: what stands before a ':' may be part of a token (a bare token with a ':' in it).
            raise ConfigurationError(
                "a caller name (before the ':' of 'caller:token') must be 1-64 letters, digits or . _ @ -; a token "
                "that holds a ':' needs its caller's name before it"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigurationError(
                f"the token of caller {caller!r} is {len(token)} characters; at least {MIN_TOKEN_CHARS} are "
                f"needed. Make one with: {_GENERATE}"
            )
        digest = _digest(token)
        if any(hmac.compare_digest(digest, known) for known, _ in self._callers):
            raise ConfigurationError(f"the token of caller {caller!r} is given twice")
        if any(existing.id == caller for _, existing in self._callers):
            raise ConfigurationError(f"caller {caller!r} has two tokens; give each its own name")
        self._callers.append((digest, Caller(caller)))

    def __len__(self) -> int:
        return len(self._callers)

    def caller_for(self, token: str) -> Caller | None:
        """The caller whose token this is, or ``None``. Every entry is compared, in constant time."""
        digest = _digest(token)
        found = None
        for known, caller in self._callers:
            if hmac.compare_digest(digest, known):
                found = caller
        return found

    @staticmethod
    def parse(text: str, source: str) -> list[tuple[str, str]]:
        """``(caller, token)`` entries of ``text``: ``caller:token`` or a bare token, separated by commas or new
        lines; blank lines and lines starting with ``#`` are skipped. Errors name ``source`` and the line."""
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for item in line.split(","):
                item = item.strip()
                if not item:
                    continue
                if any(character.isspace() for character in item):
                    # Neither a caller name nor a bearer token has one: "alice:s3cret  # ops" made a token no
                    # request could send. Not echoed, as the entry holds a token.
                    raise ConfigurationError(
                        f"{source}, line {number}: an entry contains a space (a comment after a token? comments "
                        "go on lines of their own, starting with #)"
                    )
                caller, sep, token = item.partition(":")
                if not sep:
                    caller, token = f"token-{_digest(item).hex()[:8]}", item
                if not token:  # the caller's name not quoted: it may be a token that ends with ':'
                    raise ConfigurationError(f"{source}, line {number}: an entry has nothing after its ':'")
                entries.append((caller.strip(), token.strip()))
        return entries

    @classmethod
    def load(cls, tokens: str | None, tokens_file: Path | None) -> TokenTable:
        """The tokens of ``NON_SERVE_TOKENS`` (``tokens``) and of ``tokens_file``, together."""
        entries = cls.parse(tokens, "NON_SERVE_TOKENS") if tokens else []
        if tokens_file is not None:
            try:
                text = tokens_file.read_text(encoding="utf-8")
            except OSError as error:
                raise ConfigurationError(f"tokens file {str(tokens_file)!r} cannot be read: {error}") from None
            entries += cls.parse(text, str(tokens_file))
        return cls(entries)
