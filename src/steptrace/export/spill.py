"""The spill file: where spans the collector did not take are kept, as step records.

Each span becomes one JSON line in the step-record schema (what the JSONL step log would hold),
so a run exported during an outage can still be read with ``steptrace`` tools.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan

from steptrace._jsonl import encode_record, span_to_record
from steptrace.export.fork import renew_in_child


class SpillFile:
    """Appends spans as step records (one JSON line each) to a 0600 file; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        renew_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # it may have been held by a thread the child does not have

    def write(self, spans: Sequence[ReadableSpan]) -> int:
        """Append the records of ``spans``; returns how many were written (a span outside any
        agent run has no step record). Raises OSError if the file cannot be written."""
        lines: list[bytes] = []
        for span in spans:
            record = span_to_record(span)  # exactly what the JSONL step log would hold
            if record is not None:
                lines.append(encode_record(record))
        if not lines:
            return 0
        data = b"".join(lines)
        with self._lock:
            self._append(data)
        return len(lines)

    def _append(self, data: bytes) -> None:
        """The one write path (called with the lock held): open, append whole, close."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
