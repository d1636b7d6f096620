"""Secret redaction for captured content: runs on every value before it leaves the process.

A match becomes ``[REDACTED:<kind>]`` and keeps no part of the secret. Users add regular
expressions and a callable through ``configure(redact_patterns=..., redact=...)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

REDACTION_FAILED = "[REDACTED:redactor-failed]"

# Detection looks this far past a cut, so a secret straddling it is recognised whole and
# replaced whole: no prefix of it survives truncation. Longer than any bounded-length secret.
REDACTION_MARGIN_CHARS = 8_192

_KEY_CACHE_SIZE = 4_096


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# A secret-named argument's value found again elsewhere in its span: the same kind as the
# argument itself shows in the captured input.
SECRET_VALUE_KIND = "sensitive-key"
_PLAIN_SECRET = re.compile(r"[^\\'\"\x00-\x1f\x7f-\U0010ffff]*")


def secret_forms(secrets: Sequence[str]) -> Sequence[str]:
    """``secrets`` and, for those with quotes, backslashes or non-ASCII characters, how they read
    quoted in a message (``repr``) or in JSON text. Longest first, as given."""
    if all(_PLAIN_SECRET.fullmatch(secret) for secret in secrets):
        return secrets
    forms: dict[str, None] = {}
    for secret in secrets:
        forms[secret] = None
        forms[repr(secret)[1:-1]] = None
        forms[json.dumps(secret)[1:-1]] = None
        forms[json.dumps(secret, ensure_ascii=False)[1:-1]] = None
    return sorted(forms, key=len, reverse=True)


# --- keys whose values are secrets whatever they look like -----------------------------------------
# A key is split into words (snake_case, kebab-case, camelCase, dotted); its last word decides.
# ``password``, ``client_secret``, ``X-Api-Key``, ``accessToken``, ``Set-Cookie`` are secret;
# ``max_tokens``, ``token_count``, ``password_policy``, ``primary_key`` are not.
_KEY_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SECRET_LAST_WORDS = frozenset(
    {
        "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets", "token",
        "cookie", "cookies", "credential", "credentials", "authorization", "auth", "apikey",
        "bearer", "privatekey", "accesskey", "secretkey", "sessiontoken",
    }
)  # fmt: skip
# ``<word> key`` pairs naming a secret key (``api_key``, ``private-key``, ``signingKey``).
_SECRET_KEY_QUALIFIERS = frozenset(
    {
        "api", "private", "secret", "access", "signing", "encryption", "master", "session",
        "auth", "client", "app", "license", "account", "ssh", "gpg", "pgp", "x", "subscription",
    }
)  # fmt: skip


def _classify_key(key: str) -> str | None:
    words = [word.lower() for word in _KEY_WORD.findall(key)]
    while words and words[-1].isdigit():  # password2, token_1
        words.pop()
    if not words:
        return None
    last = words[-1]
    if last in _SECRET_LAST_WORDS:
        return "sensitive-key"
    if last == "key" and len(words) > 1 and words[-2] in _SECRET_KEY_QUALIFIERS:
        return "sensitive-key"
    return None


_key_cache: dict[str, str | None] = {}
# Keys already classified as not secret: a set, so all of a mapping's keys are checked in one
# C-level ``issuperset`` (see ``all_keys_plain``) on the hot path of every tool call.
_plain_keys: set[str] = set()


def sensitive_key_kind(key: str) -> str | None:
    """``"sensitive-key"`` when values under ``key`` are always secret, else None (cached)."""
    try:
        return _key_cache[key]
    except KeyError:
        pass
    kind = _classify_key(key[-_KEY_TAIL_CHARS:])
    if len(_key_cache) >= _KEY_CACHE_SIZE:
        _key_cache.clear()
        _plain_keys.clear()
    _key_cache[key] = kind
    if kind is None and type(key) is str:
        _plain_keys.add(key)
    return kind


def all_keys_plain(keys: Iterable[Any]) -> bool:
    """True when every key is a string already seen by ``sensitive_key_kind`` and not secret.

    False says nothing: some key is secret, not a string, or not classified yet.
    """
    return _plain_keys.issuperset(keys)


# --- text detectors ---------------------------------------------------------------------------------
# Each detector runs on its own (a single alternation would defeat the regex engine's literal-prefix
# search), most behind a cheap substring test. Case-insensitive words are found with str.find on a
# lower-cased copy of the text, which is much faster than a case-insensitive regex.
#
# Cost: O(n) in the text's length n on every input, up to ~2 ms per KB at worst (digit groups
# checked as card numbers; ordinary text ~0.03 ms). Each detector scans a stretch of text a bounded
# number of times: no pattern backtracks over more than the run it scanned; token-like secrets are
# only tried where a token starts (``eyJeyJ...`` is scanned once, not once per ``eyJ``); a
# ``key=value`` assignment is decided once per run of key characters, reading at most its last 200,
# and the end of a bare value or a line is looked up once per stretch (``X-Api-Key-X-Api-Key-...``,
# ``key=key=key=...``); card candidates are windows of at most 37 characters. Sorting merges a
# fixed number of already-ordered runs (Timsort: linear). tests/test_redaction_providers.py checks
# the bound on repeated prefixes of every detector; bench/case_redaction.py measures it per KB.
_TOKEN_CHARS = "A-Za-z0-9_-"
_TOKEN_START = rf"(?<![{_TOKEN_CHARS}])"  # token-like secrets must start a token: ``task-...`` is no key
# (kind, literal that must occur for a match, pattern)
_LITERAL_DETECTORS: tuple[tuple[str, str | None, re.Pattern[str]], ...] = tuple(
    (kind, trigger, re.compile(pattern))
    for kind, trigger, pattern in (
        (
            "private-key",
            "-----BEGIN",
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
            r"(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        ),
        # anthropic before openai: an overlapping match keeps the first kind.
        ("anthropic-key", "sk-ant-", rf"{_TOKEN_START}sk-ant-[{_TOKEN_CHARS}]{{8,}}"),
        ("openai-key", "sk-", rf"{_TOKEN_START}sk-[{_TOKEN_CHARS}]{{16,}}"),
        # Google API keys (Gemini, Maps, Firebase, Vertex express mode): AIza + 35 characters.
        ("google-api-key", "AIza", rf"{_TOKEN_START}AIza[{_TOKEN_CHARS}]{{35,}}"),
        (
            "aws-access-key",
            None,
            rf"{_TOKEN_START}(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|AKPA|ANPA|ANVA|APKA|AROA|ASCA)"
            r"[A-Z0-9]{16}(?![A-Za-z0-9])",
        ),
        ("github-token", "gh", rf"{_TOKEN_START}gh[pousr]_[A-Za-z0-9]{{20,}}"),
        ("github-token", "github_pat_", rf"{_TOKEN_START}github_pat_[A-Za-z0-9_]{{20,}}"),
        ("slack-token", "xox", rf"{_TOKEN_START}xox[abeposr]-[A-Za-z0-9-]{{10,}}"),
        ("slack-token", "xapp-", rf"{_TOKEN_START}xapp-[0-9]++-[A-Za-z0-9-]{{10,}}"),
        (
            "slack-token",
            "hooks.slack.com",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
        ),
        (
            "jwt",
            "eyJ",
            rf"{_TOKEN_START}eyJ[{_TOKEN_CHARS}]{{4,}}+\.[{_TOKEN_CHARS}]{{4,}}+\.[{_TOKEN_CHARS}]*+"
            rf"(?:\.[{_TOKEN_CHARS}]*+){{0,2}}",
        ),
    )
)
# user:password@ after a URL's ``://``; the span is the user info, the host is kept.
_URL_USER_INFO = re.compile(r"[^\s/?#@:\"'<>]*+:[^\s/?#@\"'<>]++(?=@)")
_AWS_ACCESS_KEY = next(p for kind, _, p in _LITERAL_DETECTORS if kind == "aws-access-key")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NOT_KEY_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
# Only a key's last words decide (see _classify_key): this much of a long key is read.
_KEY_TAIL_CHARS = 200

_BEARER_REST = re.compile(r"[ \t]++[A-Za-z0-9\-._~+/]{8,}+=*")
# Lower-case words that end (or, for "key", end a pair that ends) a sensitive key name.
_KEY_TRIGGERS = ("pass", "pwd", "secret", "token", "key", "auth", "cookie", "credential", "bearer")
# After a key: an optional closing quote, ``:`` or ``=``; then the value, quoted or bare.
_ASSIGNMENT = re.compile(r"[\"']?+[ \t]*+[:=][ \t]*+")
_QUOTED_VALUE = re.compile(r"\"(?:[^\"\\\n]|\\.)*+\"|'(?:[^'\\\n]|\\.)*+'")
_BARE_VALUE_END = re.compile(r"[\s\"'&]")
_LINE_END = re.compile(r"[\r\n]")
# ``?key=...`` / ``&key=...``: a bare ``key`` is a secret as a URL's query parameter (Google APIs).
_QUERY_SECRET_KEYS = frozenset({"key"})
# Header-like keys whose value runs to the end of the line (``Cookie: a=1; b=2``).
_WHOLE_LINE_KEYS = frozenset({"cookie", "cookies", "authorization", "auth"})
_AUTH_SCHEME = re.compile(r"(?i:basic|bearer|token|digest|negotiate)[ \t]++")
_CARD = re.compile(r"[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
_DIGIT_GROUP = re.compile(r"[0-9]+")
_DIGITS = "0123456789"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

Span = tuple[int, int, str]


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """13 to 19 digits passing the Luhn check."""
    return 13 <= len(digits) <= 19 and _luhn_valid(digits)


def _card_spans(text: str, start: int, end: int, out: list[Span]) -> None:
    """Card numbers inside a run of digit groups: the whole run, or a sub-run of whole groups.

    ``4111 1111 1111 1111 12`` (a number followed by an expiry) is a card plus a group.
    """
    groups = [m.span() for m in _DIGIT_GROUP.finditer(text, start, end)]
    counts = [0]  # digits in groups[:i]
    for a, b in groups:
        counts.append(counts[-1] + b - a)
    all_digits = "".join(text[a:b] for a, b in groups)
    first = 0
    while first < len(groups):
        for last in range(len(groups) - 1, first - 1, -1):
            digit_count = counts[last + 1] - counts[first]
            if digit_count < 13:  # fewer groups only have fewer digits
                break
            if digit_count > 19:
                continue
            chosen = groups[first : last + 1]
            # Printed card numbers group by 4 to 6 digits; a UUID's 8- or 12-digit group is not one.
            if len(chosen) > 1 and any(b - a > 6 for a, b in chosen):
                continue
            digits = all_digits[counts[first] : counts[last + 1]]
            if len(set(digits)) > 1 and is_card_number(digits):
                out.append((groups[first][0], groups[last][1], "card-number"))
                first = last
                break
        first += 1


class _StretchEnd:
    """Where the stretch of text starting at a position ends (the first ``stop`` match after it),
    remembered: every position inside a stretch already measured is answered without a scan."""

    __slots__ = ("_from", "_stop", "_text", "_to")

    def __init__(self, text: str, stop: re.Pattern[str]) -> None:
        self._text, self._stop = text, stop
        self._from, self._to = 0, -1

    def __call__(self, position: int) -> int:
        if self._from <= position <= self._to:
            return self._to
        found = self._stop.search(self._text, position)
        self._from, self._to = position, found.start() if found is not None else len(self._text)
        return self._to


def _assignment_spans(text: str, lowered: str, out: list[Span]) -> None:
    """``password=...``, ``"api_key": "..."``, ``Authorization: Basic ...``, ``?key=...``: the values.

    Decided once per run of key characters holding a trigger word (every trigger in one run names
    the same key); the ends of bare values and lines are looked up through ``_StretchEnd``.
    """
    positions: list[int] = []
    for word in _KEY_TRIGGERS:
        positions += _find_all(lowered, word)
    positions.sort()  # a few ordered runs: Timsort merges them in linear time
    bare_end = _StretchEnd(text, _BARE_VALUE_END)
    line_end = _StretchEnd(text, _LINE_END)
    stripped: tuple[int, int] = (-1, -1)  # (value end, that end less a trailing ";" or ",")
    run_end = -1
    for position in positions:
        if position < run_end:
            continue
        after_key = _NOT_KEY_CHAR.search(text, position)
        run_end = after_key.start() if after_key is not None else len(text)
        assignment = _ASSIGNMENT.match(text, run_end)
        if assignment is None:
            continue
        key_start = position  # walked back no further than the key's last words, which decide
        floor = max(0, run_end - _KEY_TAIL_CHARS)
        while key_start > floor and text[key_start - 1] in _KEY_CHARS:
            key_start -= 1
        key = text[max(key_start, floor) : run_end]
        if sensitive_key_kind(key) is None and not (
            key.lower() in _QUERY_SECRET_KEYS and key_start > 0 and text[key_start - 1] in "?&"
        ):
            continue
        value_start = assignment.end()
        if value_start >= len(text):
            continue
        if text[value_start] in "'\"":
            quoted = _QUOTED_VALUE.match(text, value_start)
            if quoted is None:
                continue
            value_start, value_end = value_start + 1, quoted.end() - 1
        else:
            value_end = bare_end(value_start)
            if value_end == value_start:
                continue
            words = _KEY_WORD.findall(key)
            if words and words[-1].lower() in _WHOLE_LINE_KEYS:
                value_end = line_end(value_start)
            else:
                scheme = _AUTH_SCHEME.match(text, value_start)
                if scheme is not None:
                    value_end = max(value_end, bare_end(scheme.end()))
            # A ``;`` or ``,`` ending the value ends the header or the pair (``X-Api-Key: k;``): kept.
            if stripped[0] != value_end:
                end = value_end
                while end > value_start and text[end - 1] in ";,":
                    end -= 1
                stripped = (value_end, end)
            value_end = max(stripped[1], value_start)
        if value_end > value_start:
            out.append((value_start, value_end, "sensitive-key"))


def _find_all(haystack: str, needle: str) -> list[int]:
    positions = []
    position = haystack.find(needle)
    while position >= 0:
        positions.append(position)
        position = haystack.find(needle, position + 1)
    return positions


# For short strings (most tool arguments and results) a few substring tests say whether any
# detector could match at all: cheaper than the fixed cost of running each detector.
_SHORT_TEXT_CHARS = 256
_TRIGGERS = (
    "sk-", "-----begin", "gh", "github_pat_", "xox", "xapp-", "hooks.slack.com", "eyj", "bearer",
    "pass", "pwd", "secret", "token", "key", "auth", "cookie", "credential", "aiza",
)  # fmt: skip


def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    for trigger in _TRIGGERS:
        if trigger in lowered:
            return True
    if "://" in text and "@" in text:  # user:password@ in a URL
        return True
    if sum(map(text.count, _DIGITS)) >= 13:
        return True
    return _AWS_ACCESS_KEY.search(text) is not None


def may_hold_secret(text: str) -> bool:
    """False only when no built-in detector can match anything in ``text`` (a fast pre-check)."""
    lowered = text.lower()
    for trigger in _TRIGGERS:
        if trigger in lowered:
            return True
    if "://" in text and "@" in text:
        return True
    if _AWS_ACCESS_KEY.search(text) is not None:
        return True
    cards: list[Span] = []
    for match in _CARD.finditer(text):  # long float reprs are digit runs too: check them whole
        start, end = match.span()
        if start == 0 or text[start - 1] not in _DIGITS:
            _card_spans(text, start, end, cards)
            if cards:
                return True
    return False


def builtin_spans(text: str) -> list[Span]:
    """(start, end, kind) of every secret the built-in detectors find in ``text``."""
    out: list[Span] = []
    if len(text) < _SHORT_TEXT_CHARS and not _may_hold_secret(text):
        return out
    for kind, trigger, pattern in _LITERAL_DETECTORS:
        if trigger is not None and trigger not in text:
            continue
        for match in pattern.finditer(text):
            out.append((match.start(), match.end(), kind))
    for position in _find_all(text, "://"):
        user_info = _URL_USER_INFO.match(text, position + 3)
        if user_info is not None:
            out.append((position + 3, user_info.end(), "url-credentials"))
    lowered = text.lower()
    if len(lowered) != len(text):  # a character whose lower case is longer: keep positions
        lowered = text.translate(_ASCII_LOWER)
    for position in _find_all(lowered, "bearer"):
        token = _BEARER_REST.match(text, position + 6)
        if token is not None:
            out.append((position, token.end(), "bearer-token"))
    _assignment_spans(text, lowered, out)
    for match in _CARD.finditer(text):
        start, end = match.span()
        if start > 0 and text[start - 1] in _DIGITS:
            continue
        _card_spans(text, start, end, out)
    return out


def _merge(spans: list[Span]) -> list[Span]:
    spans.sort()
    merged: list[Span] = []
    for start, end, kind in spans:
        if merged and start < merged[-1][1]:
            previous = merged[-1]
            if end > previous[1]:
                merged[-1] = (previous[0], end, previous[2])
            continue
        merged.append((start, end, kind))
    return merged


def _render(text: str, spans: list[Span], start: int, end: int) -> str:
    """``text[start:end]`` with every span touching that range replaced whole by its marker."""
    pieces: list[str] = []
    position = start
    for span_start, span_end, kind in spans:
        if span_end <= start:
            continue
        if span_start >= end:
            break
        if span_start > position:
            pieces.append(text[position:span_start])
        pieces.append(marker(kind))
        position = max(position, span_end)
    if position < end:
        pieces.append(text[position:end])
    return "".join(pieces)


class Redactor:
    """Replaces secrets in text and under sensitive keys; never returns any part of a secret."""

    __slots__ = ("_custom", "_func", "key_cache")

    def __init__(
        self,
        patterns: Sequence[str | re.Pattern[str]] = (),
        func: Callable[[Any], Any] | None = None,
    ) -> None:
        custom: list[re.Pattern[str]] = []
        for pattern in patterns:
            if isinstance(pattern, re.Pattern):
                if not isinstance(pattern.pattern, str):
                    raise TypeError(f"redact_patterns: {pattern!r} is a bytes pattern; use a str pattern")
                custom.append(pattern)
            elif isinstance(pattern, str):
                custom.append(re.compile(pattern))
            else:
                raise TypeError(
                    f"redact_patterns entries must be str or re.Pattern, not {type(pattern).__name__}"
                )
        if func is not None and not callable(func):
            raise TypeError(f"redact= must be a callable, not {type(func).__name__}")
        self._custom = tuple(custom)
        self._func = func
        # Mapping keys as redacted (see _content): keys repeat, their detection need not.
        self.key_cache: dict[str, str] = {}

    @staticmethod
    def sensitive_key_kind(key: str) -> str | None:
        """The redaction kind for a mapping key whose value is always secret, else None."""
        return sensitive_key_kind(key)

    def spans(self, text: str, secrets: Sequence[str] = ()) -> list[Span]:
        """Merged (start, end, kind) of every secret in ``text``: built-in, custom, and ``secrets``.

        ``secrets`` are literal values known to be secret (a tool's secret-named arguments, see
        ``_content.secret_argument_values``), found wherever they occur.
        """
        found = builtin_spans(text)
        for pattern in self._custom:
            for match in pattern.finditer(text):
                if match.end() > match.start():
                    found.append((match.start(), match.end(), "custom"))
        for secret in secret_forms(secrets) if secrets else ():
            position = text.find(secret)
            while position >= 0:
                found.append((position, position + len(secret), SECRET_VALUE_KIND))
                position = text.find(secret, position + len(secret))
        return _merge(found) if found else found

    def redact_text(self, text: str, secrets: Sequence[str] = ()) -> str:
        """``text`` with every detected secret replaced by ``[REDACTED:<kind>]``."""
        spans = self.spans(text, secrets)
        if not spans:
            return text
        return _render(text, spans, 0, len(text))

    def redact_prefix(self, text: str, limit: int, secrets: Sequence[str] = ()) -> tuple[str, bool]:
        """The redacted first ``limit`` characters of ``text``, and whether it was cut.

        Detection sees a margin past the cut; a secret straddling the cut is replaced whole.
        """
        if len(text) <= limit:
            return self.redact_text(text, secrets), False
        window = text[: limit + REDACTION_MARGIN_CHARS]
        return _render(window, self.spans(window, secrets), 0, limit), True

    def redact_suffix(self, text: str, limit: int, secrets: Sequence[str] = ()) -> tuple[str, bool]:
        """The redacted last ``limit`` characters of ``text`` (a traceback's end), and whether cut."""
        if len(text) <= limit:
            return self.redact_text(text, secrets), False
        window_start = max(0, len(text) - limit - REDACTION_MARGIN_CHARS)
        window = text[window_start:]
        return _render(window, self.spans(window, secrets), len(window) - limit, len(window)), True

    def apply_user_callable(self, value: Any) -> Any:
        """The user's ``redact=`` callable on a value; a failure yields a marker, never the raw value."""
        if self._func is None:
            return value
        try:
            return self._func(value)
        except Exception:
            return REDACTION_FAILED

    @property
    def has_user_callable(self) -> bool:
        return self._func is not None

    @property
    def has_custom_patterns(self) -> bool:
        return bool(self._custom)

    def redact_stack(self, text: str, limit: int, secrets: Sequence[str] = ()) -> tuple[str, bool]:
        """A stack trace's redacted last ``limit`` characters (user callable included), and whether cut.

        A traceback ends with the exception's message, so it gets what the message gets,
        ``secrets`` (the span's secret argument values) included.
        """
        if self._func is not None:
            window = text[-(limit + REDACTION_MARGIN_CHARS) :]
            result = self.apply_user_callable(window)
            text = result if isinstance(result, str) else REDACTION_FAILED
        return self.redact_suffix(text, limit, secrets)

    def redact_message(self, text: str, limit: int, secrets: Sequence[str] = ()) -> str:
        """An error message or status text: the user callable (on text), detectors, then the bound.

        ``secrets``: literal values to scrub too (the span's secret-named arguments).
        """
        if self._func is not None:
            result = self.apply_user_callable(text)
            text = result if isinstance(result, str) else REDACTION_FAILED
        redacted, cut = self.redact_prefix(text, limit, secrets)
        if cut:
            redacted += f"...[truncated: {len(text)} chars]"
        return redacted


DEFAULT_REDACTOR = Redactor()
