"""Keeping API keys out of text: the one place where a secret is replaced by ``[REDACTED]``.

Every text NoN turns into a signal passes through here: NoN's exception messages (:class:`~nons.base.errors.
NonError` redacts its arguments), span names, attributes, event attributes and status descriptions (the span
helper cleans them with :func:`clean`), log records bridged to OpenTelemetry, and the vendor's error text and
body (:func:`redact`, :func:`redact_json`).

What is redacted is every key NoN has read (:func:`register_secret`: the settings and the providers register the
keys they read), in every form a key takes in a message:

- the key itself, and as JSON, ``repr()`` (of the string or of its bytes, as in ``b'Bearer sk-...\\n'``) and URL
  encoding write it;
- the key's own prefix and tail around a mask (``sk-pro****wxyz``, ``sk-...wxyz``), as vendors quote a bad key;
- any run of :data:`RUN_CHARS` characters of it (a key cut short, or split over two lines).

A key shorter than :data:`MIN_REDACTED_CHARS` is never redacted: no vendor issues one, and replacing a word
like ``k`` or ``ok`` everywhere corrupts the text (``tokens`` became ``to[REDACTED]ens``, which then no longer
read as a context-length error). :mod:`nons.base.keys` refuses keys that are obviously not keys.

Finding a key costs a few substring searches per text: each form is known by its :data:`_BLOCK`-character
blocks, and any run of :data:`RUN_CHARS` characters of a form holds one of them, so only a text that holds a
block (or a key's tail, for the masked form) is searched with that key's pattern. Each key has a pattern of its
own, built once: a process that registers a key per tenant pays for each key once, not again for every key
before it at each new one (one pattern of every key, rebuilt per key, stalled the loop 0.6 s at 600 keys).
"""

from __future__ import annotations

import bisect
import functools
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

__all__ = [
    "MIN_REDACTED_CHARS",
    "REDACTED",
    "RUN_CHARS",
    "clean",
    "clean_attributes",
    "clean_value",
    "displayable_url",
    "encodable",
    "hide_credential_params",
    "is_credential_name",
    "redact",
    "redact_json",
    "register_secret",
]

#: What a secret is replaced with.
REDACTED = "[REDACTED]"
#: Keys shorter than this are not redacted (see the module's docstring).
MIN_REDACTED_CHARS = 8
#: Any run of this many characters of a key is redacted, wherever it appears.
RUN_CHARS = 12
# Every run of RUN_CHARS characters holds one of a form's blocks at offsets 0, _BLOCK, 2 * _BLOCK...
_BLOCK = RUN_CHARS // 2
# A masked key: at least three of these between the key's prefix and its tail.
_MASK = r"[*•·…#.]"
_MASK_CHARACTER = re.compile(_MASK)
_TAIL = 4
_REPEATED = re.compile(r"(?:" + re.escape(REDACTED) + r")+")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class _KeyMatcher:
    """One secret's forms: the cheap needles a text must hold before its pattern runs, and the pattern."""

    needles: tuple[str, ...]
    pattern: re.Pattern[str]
    forms: tuple[str, ...]
    length: int  # its longest form's: a key inside another is found as the longer first


@dataclass(frozen=True)
class _Matcher:
    """Every registered secret's matcher, longest first, and which of them each needle belongs to. Made anew
    at each registration but for ``by_needle``, which only grows (under the lock): a reader that finds a newer
    key's needle in it redacts more, never less."""

    keys: tuple[_KeyMatcher, ...] = ()
    by_needle: dict[str, list[_KeyMatcher]] = field(default_factory=dict)


#: Up to this many needles, a text is searched for each (a substring search in C each; a process has a key or
#: three). Past it (an application with a key per tenant), the text's own 4- and 6-character runs are looked up
#: among the needles instead: a cost that grows with the text, not with the keys.
_SCAN_NEEDLES = 256

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_matcher = _Matcher()
#: How many secrets have been registered: a value cleaned once and kept (a call site's span and metric labels,
#: :mod:`nons.core.call.labels`) is cleaned again once this has moved on. Read it as ``redaction.generation``: a
#: name imported from here would not see it change.
generation = 0


def register_secret(secret: str | None) -> None:
    """Redact ``secret`` (stripped) from every text from now on. Secrets under :data:`MIN_REDACTED_CHARS` are
    ignored; registering one twice costs a set lookup. Registering one builds its own matcher only: the cost does
    not grow with the secrets registered before it (an application may use a key per tenant)."""
    global _secrets, _matcher, generation
    if not secret:
        return
    secret = secret.strip()
    if len(secret) < MIN_REDACTED_CHARS or secret in _secrets:
        return
    with _lock:
        if secret in _secrets:
            return
        _matcher = _with_key(_matcher, _key_matcher(secret))
        _secrets = _secrets | {secret}
        # Last: whoever reads the new generation cleans with the new matcher. The cache is keyed by generation
        # too, so what another thread cleans with the old matcher at this very moment is stored under the old
        # generation, where no later lookup finds it; the clear only frees the memory.
        generation += 1
        _clean_short.cache_clear()


def _forms(secret: str) -> set[str]:
    """How ``secret`` may be written in a message."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    }
    return {form for form in forms if len(form) >= MIN_REDACTED_CHARS}


def _key_matcher(secret: str) -> _KeyMatcher:
    """``secret``'s matcher. Its needles are 6-character blocks of its forms (any run of :data:`RUN_CHARS`
    characters of a form holds one), a short form's first 6 characters, and its last :data:`_TAIL` characters
    (the masked form's): so every needle is 4 or 6 characters long, as :func:`_candidates` looks them up."""
    needles: set[str] = set()
    windows: set[str] = set()
    forms = _forms(secret)
    for form in forms:
        needles.add(form[:_BLOCK])
        if len(form) >= RUN_CHARS:
            needles.update(form[i : i + _BLOCK] for i in range(0, len(form) - _BLOCK + 1, _BLOCK))
            needles.add(form[-_BLOCK:])
            windows.update(form[i : i + RUN_CHARS] for i in range(len(form) - RUN_CHARS + 1))
    # Longest first, so that a whole key is one match rather than a run of windows.
    alternatives = [re.escape(f) for f in sorted(forms, key=len, reverse=True)]
    if len(secret) >= RUN_CHARS:
        needles.add(secret[-_TAIL:])
        # The key's first three characters, maybe more of it, a mask, maybe some of it, its last four. What is
        # around the mask is of the key's own characters other than the mask's: with any non-space there (\S), or
        # a key's own dot, a run of mask characters could be split every way between the parts, and a crafted text
        # of the key's first characters and dots took some 50 µs a character.
        own = {re.escape(c) for c in secret if not _MASK_CHARACTER.match(c)}
        between = "[" + "".join(sorted(own)) + rf"]{{0,{len(secret)}}}?" if own else ""
        alternatives.append(re.escape(secret[:3]) + between + _MASK + "{3,}" + between + re.escape(secret[-_TAIL:]))
    alternatives += [re.escape(w) for w in sorted(windows)]
    return _KeyMatcher(tuple(needles), re.compile("|".join(alternatives)), tuple(forms), max(map(len, forms)))


def _with_key(matcher: _Matcher, key: _KeyMatcher) -> _Matcher:
    """``matcher`` and ``key``: a cost that grows with the key, and with the count of keys only as a list insert."""
    keys = list(matcher.keys)
    bisect.insort(keys, key, key=lambda k: -k.length)
    for needle in key.needles:
        matcher.by_needle.setdefault(needle, []).append(key)
    return _Matcher(tuple(keys), matcher.by_needle)


def _candidates(text: str, matcher: _Matcher) -> list[_KeyMatcher]:
    """The keys whose needles ``text`` holds, longest key first."""
    by_needle = matcher.by_needle
    if len(by_needle) <= _SCAN_NEEDLES:
        return [key for key in matcher.keys if any(needle in text for needle in key.needles)]
    found: dict[int, _KeyMatcher] = {}
    for size in (_TAIL, _BLOCK):
        for i in range(len(text) - size + 1):
            for key in by_needle.get(text[i : i + size], ()):
                found[id(key)] = key
    return sorted(found.values(), key=lambda k: -k.length)


def _redact_with(text: str, matcher: _Matcher) -> str:
    keys = _candidates(text, matcher) if matcher.keys else []
    if not keys:
        return text
    forms = [form for key in keys for form in key.forms]
    parts: list[str] = []
    pos = 0
    ahead: dict[int, re.Match[str] | None] = {}
    while (match := _first_match(keys, text, pos, ahead)) is not None:
        parts += [text[pos : match.start()], REDACTED]
        pos = _extend(text, match.end(), match.group(), forms)
    if not parts:
        return text
    parts.append(text[pos:])
    return _REPEATED.sub(REDACTED, "".join(parts))


def _first_match(
    keys: Sequence[_KeyMatcher], text: str, pos: int, ahead: dict[int, re.Match[str] | None]
) -> re.Match[str] | None:
    """The leftmost match of any of ``keys`` from ``pos`` (the longest of those that start there), as one pattern
    of them all would find: a key whose run is in another key's (a password and its URL-encoded form share
    ``ss-word-7731``) is found where it starts, not where the other's run does. ``ahead`` keeps each key's next
    match, by its index in ``keys``: a key is searched again only once ``pos`` has passed it (searching every key
    again after each match made a text quoting many keys cost keys x matches x its length)."""
    best: re.Match[str] | None = None
    for index, key in enumerate(keys):
        if index in ahead:
            found = ahead[index]
            if found is not None and found.start() < pos:
                found = ahead[index] = key.pattern.search(text, pos)
        else:
            found = ahead[index] = key.pattern.search(text, pos)
        if found is not None and (
            best is None or found.start() < best.start() or (found.start() == best.start() and found.end() > best.end())
        ):
            best = found
    return best


def _extend(text: str, end: int, found: str, forms: Iterable[str]) -> int:
    """Where the key that ``found`` (ending at ``end``) is part of stops in ``text``: a run of a key is followed
    as far as the text keeps following the key, so that no tail of it is left behind."""
    best = end
    for form in forms:
        at = form.find(found)
        while at != -1:
            rest = form[at + len(found) :]
            n = 0
            while n < len(rest) and end + n < len(text) and text[end + n] == rest[n]:
                n += 1
            best = max(best, end + n)
            at = form.find(found, at + 1)
    return best


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without any registered secret, nor any of ``secrets`` (which are registered from now on)."""
    for secret in secrets:
        register_secret(secret)
    return _redact_with(text, _matcher)


def redact_json(value: object, *secrets: str | None) -> object:
    """``value`` (parsed JSON) with the secrets redacted from every string in it, keys included."""
    for secret in secrets:
        register_secret(secret)
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value


# -- text for telemetry -------------------------------------------------------------------------------------


def clean(text: str) -> str:
    """``text`` as a telemetry value may carry it: secrets redacted, and lone surrogates (which UTF-8 cannot
    encode, so that one of them fails a whole export batch) replaced by U+FFFD."""
    if len(text) <= _CACHED_CHARS:
        return _clean_short(text, generation)
    return _clean(text)


# Span attributes repeat (model, operator and network names, node ids): short values are cleaned once.
_CACHED_CHARS = 256


@functools.lru_cache(maxsize=4096)
def _clean_short(text: str, secrets: int) -> str:
    """``text`` cleaned, cached by ``text`` and the :data:`generation` its caller read (``secrets``): the matcher
    used is at least that new, since secrets are only ever added."""
    return _clean(text)


def _clean(text: str) -> str:
    return encodable(_redact_with(text, _matcher))


def encodable(text: str) -> str:
    """``text`` with its lone surrogates (which UTF-8 cannot encode: a model may cut an emoji in half, and a
    JSON string may spell one as ``\\ud83d``) replaced by U+FFFD."""
    if not text.isascii() and _SURROGATE.search(text):
        return _SURROGATE.sub("\ufffd", text)
    return text


def clean_value(value: Any) -> Any:
    """An attribute value cleaned: a string by :func:`clean`, a list or tuple of strings item by item (as a tuple),
    anything else as it is."""
    kind = type(value)
    if kind is str:
        return clean(value)
    if kind in _SCALARS:  # checked by exact type first: an ABC isinstance check costs more than the cleaning
        return value
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, (list, tuple)) and any(isinstance(item, str) for item in value):
        return tuple(clean(item) if isinstance(item, str) else item for item in value)
    return value


_SCALARS = frozenset({int, float, bool, type(None)})


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` with every value cleaned (see :func:`clean_value`). The names are NoN's own (every one is
    spelled in :mod:`nons.observability.names`), so they are left as they are."""
    # clean_value and clean inlined for the common values, short strings and scalars: this runs on every span's
    # attributes, some 25 values a node, and two calls a value were a quarter of the cleaning's cost.
    cleaned: dict[str, Any] = {}
    secrets = generation
    for key, value in attributes.items():
        kind = type(value)
        if kind is str and len(value) <= _CACHED_CHARS:
            cleaned[key] = _clean_short(value, secrets)
        elif kind in _SCALARS:
            cleaned[key] = value
        else:
            cleaned[key] = clean_value(value)
    return cleaned


def displayable_url(url: str) -> str:
    """``url`` as logs, messages and callers may show it: a user and password in it, and its query, may be
    credentials (a gateway's, a key as a parameter), so they are replaced by ``REDACTED``."""
    schemeless = "//" not in url  # "user:password@host/v1": read as a host, not as a scheme "user"
    try:
        parts = urlsplit("//" + url if schemeless else url)
    except ValueError:  # not a URL: served as it is only when it holds no "@" or "?"
        return url if not set(url) & {"@", "?"} else REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    served = urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "", ""))
    return served.removeprefix("//") if schemeless else served


# Parameter names that carry credentials (OpenAI's ``extra_headers``, a key passed as ``api_key`` or ``token``):
# matched on the name's lowercased words, so ``x_api_key`` and ``extra_headers`` are, ``max_tokens`` is not. The
# words that name nothing else are matched without a separator too (``clientsecret``, ``dbpassword``).
_CREDENTIAL_NAME = re.compile(
    r"(?:^|[_\-.])(?:api[_\-.]?key|key|token|secret|password|passwd|authorization|auth|credentials?|cookie|headers?)$"
    r"|(?:secret|password|passwd|apikey|passphrase)$"
)
# A camelCase name's words: "accessToken" is "access_Token" ("HTTPHeaders" stays one word before "Headers").
_CAMEL_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_credential_name(name: str) -> bool:
    """Whether a parameter called ``name`` may hold a credential (``api_key``, ``x-api-key``, ``auth_token``,
    ``accessToken``, ``extra_headers``, ...), so that its value is never shown or served."""
    return _CREDENTIAL_NAME.search(_CAMEL_WORD.sub("_", name).lower()) is not None


def hide_credential_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as they may be shown or served: the value of each parameter named like a credential (see
    :func:`is_credential_name`) replaced by ``REDACTED``, at any depth (``extra_query: {"api-key": ...}``), the
    others as they are."""
    return {k: REDACTED if is_credential_name(str(k)) else _hide_within(v, 0) for k, v in params.items()}


def _hide_within(value: Any, depth: int) -> Any:
    if depth > 16:  # deeper than any request's parameters: shown as nothing rather than walked for ever
        return REDACTED
    if isinstance(value, Mapping):
        return {k: REDACTED if is_credential_name(str(k)) else _hide_within(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hide_within(item, depth + 1) for item in value]
    return value
