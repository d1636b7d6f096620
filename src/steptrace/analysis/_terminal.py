"""Text for a terminal: what the ``steptrace`` command prints, with control characters escaped.

A logged error or a captured tool result is data; shown raw, ``\\x1b]0;...\\x07`` retitles the
terminal and ``\\x1b[2J`` clears it. Like ``git`` and ``less``, every control character is shown
as an escape instead — except newlines (output is multi-line by design) and tabs.
"""

from __future__ import annotations

import io
import re
from typing import TextIO

# C0 controls but tab and newline, DEL, C1 controls (``\x9b`` is CSI on many terminals), and the
# bidirectional overrides and isolates (text that reads differently from what it holds).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_C0_NAMES = {"\r": "\\r", "\x0b": "\\v", "\x0c": "\\f"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return _C0_NAMES.get(char) or f"\\x{code:02x}"
    # \\u form: also valid inside a JSON string (``--json`` output keeps these characters raw).
    return f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """``text`` with every control character but newline and tab escaped (``\\x1b``, ``\\r``,
    ``\\u009b``): safe to print, and still valid JSON where ``text`` was JSON.

    >>> terminal_text("boom\\x1b]0;pwned\\x07")
    'boom\\\\x1b]0;pwned\\\\x07'
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape, text)


class TerminalStream(io.TextIOBase):
    """A text stream writing through :func:`terminal_text` to ``raw`` (``sys.stdout``/``stderr``
    while a command runs: nothing it prints can reach the terminal unescaped)."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(terminal_text(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.raw.encoding


def unescaped(stream: TextIO) -> TextIO:
    """The terminal under a :class:`TerminalStream` (for the progress bar's own ``\\r``)."""
    return stream.raw if isinstance(stream, TerminalStream) else stream
