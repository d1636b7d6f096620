"""The JSONL step log: ``JsonlSpanExporter`` writes one step record per span; ``read_steps`` reads.

Each record is written with a single ``os.write`` on a file opened with ``O_APPEND``, under a
lock, so lines never interleave between threads nor between processes appending to one file,
and an ended span's record has reached the operating system before ``export`` returns: a
process killed with SIGKILL loses no ended span. Nothing here raises into the application.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from msgspec import UNSET
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from steptrace import _attributes as A
from steptrace._content import bounded_repr, make_utf8_safe
from steptrace._context import attribute_dict
from steptrace._records import (
    STATUS_ERROR,
    STATUS_OK,
    LlmCallRecord,
    Record,
    StructRecord,
    build_record_positional,
    instructions_once,
    record_after_torn_prefix,
)

logger = logging.getLogger("steptrace")

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:4096]).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return bounded_repr(value)


def _finite(value: Any, depth: int = 0) -> Any:
    """Replace NaN/inf (not JSON) by strings; cut structures too deep to be sane."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if depth > 64:
        return "[truncated: nested too deep]"
    if isinstance(value, Mapping):
        return {str(k): _finite(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, depth + 1) for v in value]
    return value


# json.dumps builds a new encoder on every call that passes options; reusing one saves ~2 µs.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json_default, separators=(",", ":"))


try:  # ~10x faster than the json module on a step record (~0.4 µs instead of ~4 µs)
    import msgspec

    _fast_encode: Any = msgspec.json.Encoder().encode
except ImportError:  # pragma: no cover - msgspec is a dependency; the json module stays the fallback
    _fast_encode = None


def encode_record(
    record: Mapping[str, Any] | StructRecord, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> bytes:
    """One record as one UTF-8 JSON line; never raises, never exceeds ``max_bytes``.

    msgspec encodes the record as it is, with no walk over its values first (~0.5 µs a record):
    what it cannot encode (lone surrogates, objects of other types, subclasses of str, int or
    float, keys that are not text or numbers, nesting past the recursion limit) makes it raise,
    and that one record takes the json module's path below with its fallbacks. Two values it
    encodes differently from that path, both still valid JSON: a NaN or infinite float is
    ``null``, and bytes are base64 text. Neither reaches a record built from a span: captured
    content is parsed with NaN kept as text (``_records``), and a foreign span's bytes and
    non-finite floats become text when its attributes are copied.
    """
    if _fast_encode is not None:
        try:
            fast: bytes = _fast_encode(record)
        except Exception:  # see above: the json module's path handles it
            pass
        else:
            if len(fast) < max_bytes:
                return fast + b"\n"
    if not isinstance(record, dict):  # a StructRecord, another Mapping: the json module needs a dict
        record = dict(record.items())
    try:
        line = _ENCODER.encode(record)
    except (ValueError, TypeError, RecursionError):
        try:
            line = _ENCODER.encode(_finite(record))
        except Exception as exc:
            line = json.dumps({**_identity(record), "encoding_error": type(exc).__name__})
    try:
        data = line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        data = make_utf8_safe(line).encode("utf-8")
    if len(data) + 1 > max_bytes:
        data = _shrink(record, len(data), max_bytes)
    return data + b"\n"


_BULKY_FIELDS = ("input", "output", "attributes", "tool_calls", "error")


def _identity(record: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("run_id", "step", "type", "name", "trace_id", "span_id", "parent_span_id", "ts")
    return {key: record.get(key) for key in keep if key in record}


def _shrink(record: Mapping[str, Any], size: int, max_bytes: int) -> bytes:
    """An oversized record with its bulky fields cut, and a marker saying so."""
    smaller = dict(record)
    budget = max(256, max_bytes // (2 * len(_BULKY_FIELDS)))
    for key in _BULKY_FIELDS:
        value = smaller.get(key)
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if len(text) > budget:
            smaller[key] = text[:budget] + f"...[truncated: {len(text)} chars]"
    smaller["truncated"] = {"original_bytes": size}
    data = make_utf8_safe(json.dumps(smaller, ensure_ascii=False, default=str)).encode("utf-8")
    if len(data) + 1 > max_bytes:
        data = json.dumps({**_identity(record), "truncated": {"original_bytes": size}}).encode()
    return data


def span_to_record(span: ReadableSpan) -> Record | None:
    """The step record for a finished SDK span (None for spans outside any agent run)."""
    try:
        # The SDK's own fields (opentelemetry-sdk 1.x ReadableSpan, and the API's SpanContext, a
        # tuple of trace id and span id first): ~0.4 µs less than their properties, on every span
        # end. If a release renames them this reads the public properties instead (same record,
        # slower) and tests/test_hot_path.py fails, to say the fast path is gone.
        sdk: Any = span
        attributes = sdk._attributes._dict
        if not attributes:
            return None
        name: str = sdk._name
        context = sdk._context
        trace_id, span_id = (context[0], context[1]) if context is not None else (0, 0)
        parent = sdk._parent
        parent_id = parent[1] if parent is not None else None
        status = sdk._status
        failed = status._status_code is StatusCode.ERROR
        description = status._description if failed else None
        start_ns = sdk._start_time or 0
        end_ns = sdk._end_time or start_ns
    except (AttributeError, TypeError, IndexError):
        return _span_to_record_public(span)
    service = None
    if name == A.SPAN_AGENT_RUN and span.resource is not None:  # only the run record names it
        service = span.resource.attributes.get("service.name")
    return build_record_positional(
        name, trace_id, span_id, parent_id, start_ns, end_ns, STATUS_ERROR if failed else STATUS_OK,
        description, attributes, str(service) if service is not None else None,
    )  # fmt: skip


def _span_to_record_public(span: ReadableSpan) -> Record | None:
    """``span_to_record`` through the span's public properties: any span, any SDK release."""
    attributes = attribute_dict(span)
    if not attributes:
        return None
    context = span.context
    parent = span.parent
    status = span.status
    failed = status.status_code is StatusCode.ERROR
    name = span.name
    service = None
    if name == A.SPAN_AGENT_RUN and span.resource is not None:
        service = span.resource.attributes.get("service.name")
    start_ns = span.start_time or 0
    return build_record_positional(
        name,
        context.trace_id if context is not None else 0,
        context.span_id if context is not None else 0,
        parent.span_id if parent is not None else None,
        start_ns,
        span.end_time or start_ns,
        STATUS_ERROR if failed else STATUS_OK,
        status.description if failed else None,
        attributes,
        str(service) if service is not None else None,
    )


class JsonlSpanExporter(SpanExporter):
    """A ``SpanExporter`` writing each span inside an agent run as one JSONL step record.

    Usable on any TracerProvider; steptrace's own configure() calls it synchronously at span end
    so the log never depends on a queue that can drop. The file is created with mode 0600 and its
    directory made if missing. Past ``max_bytes`` (0: never) it is rotated to a gzip file, keeping
    ``backups`` of them (see ``steptrace.export.rotation``). A failing disk makes ``export``
    return FAILURE and logs one warning.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_bytes: int | None = None,
        backups: int | None = None,
    ) -> None:
        # Imported here: steptrace.export's package imports this module (the spill file's records).
        from steptrace.export.rotation import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, RotatingFile

        self.path = Path(path)
        self.max_record_bytes = max_record_bytes
        self._lock = threading.Lock()
        self._warned = False
        self._shutdown = False
        self.failed = False  # an export failed since the last force_flush
        self.records_failed = 0
        # Opened now, to raise at configuration rather than on the hot path.
        self.file = RotatingFile(
            self.path,
            max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
            backups=DEFAULT_BACKUPS if backups is None else backups,
        )
        if hasattr(os, "register_at_fork"):
            # A fork while another thread holds the lock would leave the child's lock held forever.
            this = weakref.ref(self)

            def reinit_in_child() -> None:
                log = this()
                if log is not None:
                    log._after_fork()

            os.register_at_fork(after_in_child=reinit_in_child)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        ok = True
        for span in spans:
            ok = self.write_span(span) and ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def write_span(self, span: ReadableSpan) -> bool:
        """Append the span's step record; False if it could not be written (one warning).

        Unlike ``export`` this works after ``shutdown()`` too (the file is opened for that one
        record): steptrace's processor writes a span another thread ends while the program exits.
        """
        try:
            record = span_to_record(span)
            if record is None:
                return True
            if type(record) is LlmCallRecord and record.system_instructions_id is not UNSET:
                record = instructions_once(record) or record  # repeated instructions: once a run
            line = encode_record(record, self.max_record_bytes)
        except Exception as exc:
            self._fail(exc)
            return False
        return self._append(line)

    def write_record(self, record: Mapping[str, Any]) -> bool:
        """Append one record; False (and one warning per failure streak) if the disk failed."""
        return self._append(encode_record(record, self.max_record_bytes))

    def _append(self, line: bytes) -> bool:
        try:  # the file's own lock orders the writes: no second lock on the way
            self.file.append(line)
        except OSError as exc:
            with self._lock:
                self.records_failed += 1
                self._fail(exc)
            return False
        if self._warned:
            with self._lock:
                if self._warned:
                    self._warned = False
                    logger.warning("steptrace: the step log %s is writable again", self.path)
        return True

    @property
    def records_written(self) -> int:
        """Records this exporter appended (counted under the file's lock)."""
        return self.file.appends

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        if not self._warned:
            self._warned = True
            logger.warning(
                "steptrace: cannot write the step log %s (%s); your program carries on, "
                "records are not being logged until it is writable again",
                self.path,
                exc,
            )

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """True when every export since the last flush succeeded (writes are not buffered)."""
        failed, self.failed = self.failed, False
        return not failed

    def shutdown(self) -> None:
        with self._lock:
            self._shutdown = True
        self.file.close()


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_steps(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the step records of a JSONL log (``.jsonl`` or ``.jsonl.gz``).

    Corrupt lines and a torn last line (a writer killed mid-write) are skipped with a warning
    that names the line number; every other record is returned.
    """
    source = Path(path)
    with _open_text(source) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested ~1,000 levels deep
                record = record_after_torn_prefix(line)
                if record is not None:  # a killed writer's half line, then another's whole record
                    logger.warning("steptrace: %s:%d: skipped a torn record", source, number)
                    yield record
                    continue
                torn = not line.endswith("\n")
                what = "torn last line" if torn else "corrupt line"
                logger.warning("steptrace: %s:%d: skipped a %s", source, number, what)
                continue
            if isinstance(record, dict):
                yield record
            else:
                logger.warning("steptrace: %s:%d: skipped a line that is not a JSON object", source, number)
