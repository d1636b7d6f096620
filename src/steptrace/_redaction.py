"""Secret redaction for captured content: runs on every value before it leaves the process.

A match becomes ``[REDACTED:<kind>]`` and keeps no part of the secret. Users add regular
expressions and a callable through ``configure(redact_patterns=..., redact=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

REDACTION_FAILED = "[REDACTED:redactor-failed]"

# Keys whose values are secrets whatever they look like.
_SENSITIVE_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|secret|token|api[-_]?key|apikey|authori[sz]ation|cookie|"
    r"credential|private[-_]?key|session[-_]?id",
    re.IGNORECASE,
)

# (kind, pattern) in the order they are tried; more specific kinds first.
_BUILTIN_DETECTORS: tuple[tuple[str, str], ...] = (
    (
        "private-key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    ),
    ("anthropic-key", r"sk-ant-[A-Za-z0-9_\-]{10,}"),
    ("openai-key", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),
    ("aws-access-key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
    ("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    ("bearer-token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    (
        "secret-assignment",
        r"(?i)\b(?:password|passwd|secret|api[-_]?key|access[-_]?token|auth[-_]?token)"
        r"\s*[:=]\s*[\"']?[^\s\"',;]{4,}",
    ),
)

_CARD_CANDIDATE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


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


def _redact_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    if 13 <= len(digits) <= 19 and _luhn_valid(digits):
        return "[REDACTED:card-number]"
    return match.group(0)


class Redactor:
    """Replaces secrets in text and under sensitive keys; never returns any part of a secret."""

    __slots__ = ("_custom", "_detectors", "_func")

    def __init__(
        self,
        patterns: Sequence[str | re.Pattern[str]] = (),
        func: Callable[[Any], Any] | None = None,
    ) -> None:
        detectors = [(kind, re.compile(pattern)) for kind, pattern in _BUILTIN_DETECTORS]
        self._detectors = detectors
        self._custom = [re.compile(p) if isinstance(p, str) else p for p in patterns]
        self._func = func

    @staticmethod
    def sensitive_key_kind(key: str) -> str | None:
        """The redaction kind for a mapping key whose value is always secret, else None."""
        if _SENSITIVE_KEY.search(key):
            return "sensitive-key"
        return None

    def redact_text(self, text: str) -> str:
        """``text`` with every detected secret replaced by ``[REDACTED:<kind>]``."""
        for kind, pattern in self._detectors:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
        for pattern in self._custom:
            text = pattern.sub("[REDACTED:custom]", text)
        return _CARD_CANDIDATE.sub(_redact_card, text)

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
