"""The spill file: where spans the collector did not take are kept, as step records.

Each span becomes one JSON line in the step-record schema (what the JSONL step log would hold),
so a run exported during an outage can still be read with ``steptrace`` tools.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan

from steptrace._jsonl import encode_record, span_to_record
from steptrace.export.fork import renew_in_child
from steptrace.export.rotation import RotatingFile, RotationSettings


class SpillFile:
    """Appends spans as step records (one JSON line each) to a 0600 file; thread-safe.

    The file rotates like the step log (``rotation``): an outage that lasts must not fill the disk.
    It is opened at the first spill, so a collector that never fails leaves no empty file behind.
    """

    def __init__(self, path: Path, rotation: RotationSettings | None = None) -> None:
        self.path = path
        self.rotation = rotation or RotationSettings()
        self._file: RotatingFile | None = None
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
        with self._lock:
            if self._file is None:
                self._file = RotatingFile(
                    self.path, max_bytes=self.rotation.max_bytes, backups=self.rotation.backups
                )
            for chunk in _chunks(lines, self.rotation.max_bytes):
                self._file.append(chunk)
        return len(lines)

    def close(self) -> None:
        """Close the file (waits a little for a compression in progress)."""
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            file.close()


def _chunks(lines: list[bytes], limit: int) -> list[bytes]:
    """Whole lines joined into appends of at most ``limit`` bytes (0: one append), so a spilled
    batch of hundreds of spans rotates the file where the limit falls, not after it."""
    if not limit:
        return [b"".join(lines)]
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) > limit:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    chunks.append(b"".join(current))
    return chunks
