"""Find step logs on disk and stream their records, one dict at a time.

Reads the JSONL step log (``.jsonl``/``.jsonl.gz``) and OTLP JSON as the OpenTelemetry
Collector's ``file`` exporter writes it; OTLP spans go through the same ``build_record`` as the
local exporter, so both give identical records. Bad lines are counted, never fatal.
"""

from __future__ import annotations

import base64
import glob
import gzip
import importlib
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, Protocol, cast

from steptrace._errors import LogError
from steptrace._records import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    build_record,
    record_after_torn_prefix,
)

# Suffixes a directory is searched for. ``.json`` too: the Collector's file exporter is often
# pointed at ``traces.json``.
LOG_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
# How many corrupt line numbers a warning names; the count is always exact.
_FIRST_CORRUPT_SHOWN = 5
# Report progress every this many lines: often enough for a smooth bar, rare enough to be free.
_PROGRESS_EVERY_LINES = 20_000
# The decoders raise RecursionError from about 1,000 levels of nesting. The fast path skips the
# fields it does not need without that limit, so a line that could nest that deep (long, with
# many brackets) is decoded whole instead: the full and the fast pass then agree on what is corrupt.
_DEEP_LINE_BYTES = 1600
_DEEP_BRACKETS = 800

ProgressCallback = Callable[[int], None]
# A step log's rotated name (steptrace.export.rotation): ``<stem>.<UTC time>.jsonl``.
_ROTATED_NAME = re.compile(r".+\.\d{8}T\d{6}\.\d{6}Z(-\d+)?\.jsonl")

MIB = 1024 * 1024
DEFAULT_MAX_LINE_BYTES = 64 * MIB
MAX_LINE_BYTES_ENV = "STEPTRACE_MAX_LINE_BYTES"
# A line past the limit is read on in pieces this big and dropped: memory stays bounded by the limit.
_DISCARD_CHUNK_BYTES = MIB

LOG_RECORD_TYPE = "log"
"""``type`` of a captured log line (``configure(capture_logs=...)``): not a span, so the aggregate
pass and a run's records skip it; :func:`iter_log_records` reads these alone."""


# The fields the per-run aggregates read. The fast path decodes only these, so the (large)
# captured input/output of every record is skipped instead of being turned into objects.
STEP_FIELDS = (
    "run_id",
    "type",
    "name",
    "trace_id",
    "started_at",
    "ts",
    "duration_ms",
    "status",
    "span_id",
    "parent_span_id",
    "tool",
    "args_hash",
    "input_tokens",
    "output_tokens",
    "agent",
    "release",
    "service",
    "stop_reason",
    "attributes",
    # Pricing (steptrace/_pricing.py) and the run filters (conversation).
    "model",
    "request_model",
    "provider",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "conversation_id",
    # The run record's own error count: the one definition every command shows.
    "errors",
    # Reruns (steptrace.rerun): a run record's rerun_of; a call served from the recording.
    "rerun_of",
    "served",
)


class StepFields(Protocol):
    """The aggregate fields of one record, as attributes (None when absent)."""

    run_id: Any
    type: Any
    name: Any
    trace_id: Any
    started_at: Any
    ts: Any
    duration_ms: Any
    status: Any
    span_id: Any
    parent_span_id: Any
    tool: Any
    args_hash: Any
    input_tokens: Any
    output_tokens: Any
    agent: Any
    release: Any
    service: Any
    stop_reason: Any
    attributes: Any
    model: Any
    request_model: Any
    provider: Any
    cache_read_input_tokens: Any
    cache_creation_input_tokens: Any
    reasoning_tokens: Any
    conversation_id: Any
    errors: Any
    rerun_of: Any
    served: Any


class _DictFields:
    """StepFields read from an already-decoded record (stdlib path and OTLP input)."""

    __slots__ = STEP_FIELDS

    def __init__(self, record: Mapping[str, Any]) -> None:
        get = record.get
        for name in STEP_FIELDS:
            setattr(self, name, get(name))


def _msgspec() -> Any:
    try:
        return importlib.import_module("msgspec")
    except ImportError:
        return None


_MSGSPEC = _msgspec()


def msgspec_module() -> Any:
    """The msgspec module (a dependency), or None where it cannot be imported."""
    return _MSGSPEC


def fast_path_available() -> bool:
    """True when msgspec (a dependency) is importable: ~3x faster loading than stdlib json."""
    return _MSGSPEC is not None


def _decoders(fast: bool) -> tuple[Callable[[bytes], Any], Callable[[bytes], Any] | None]:
    """(full decoder to dicts, StepFields decoder or None) for the chosen path."""
    # One struct for every record type: a decoder giving each type a struct of its own fields
    # decodes no faster in this loop, and makes the aggregate loop ~40% slower (its attribute
    # reads then see several classes, which the interpreter's attribute caches do not take).
    if fast and _MSGSPEC is not None:
        struct = _MSGSPEC.defstruct("StepFieldsStruct", [(name, Any, None) for name in STEP_FIELDS])
        return _MSGSPEC.json.decode, _MSGSPEC.json.Decoder(struct).decode
    return json.loads, None


_FULL_DECODE, _FIELDS_DECODE = _decoders(fast=True)


def use_fast_path(enabled: bool) -> None:
    """Switch between msgspec and the stdlib json decoder (both give the same results)."""
    global _FULL_DECODE, _FIELDS_DECODE
    _FULL_DECODE, _FIELDS_DECODE = _decoders(fast=enabled)


@dataclass
class LoadIssue:
    """What was wrong inside one log file; loading kept going past all of it."""

    path: Path
    corrupt_lines: int = 0
    first_corrupt_line_numbers: list[int] = field(default_factory=list)
    torn_last_line: bool = False
    truncated_gzip: bool = False
    bad_run_id_records: int = 0
    """Records whose ``run_id`` is not a string: they belong to no run."""
    first_bad_run_id_line_numbers: list[int] = field(default_factory=list)
    duplicate_records: int = 0
    """Records of spans already read (same trace and span id), from this or another file."""
    bad_spans: int = 0
    """OTLP JSON spans that could not be read (an out-of-range timestamp): skipped one by one."""
    long_lines: int = 0
    """Lines longer than ``max_line_bytes()``: skipped as they were read, never held whole."""
    first_long_line_numbers: list[int] = field(default_factory=list)
    vanished: bool = False
    """The file was rotated away and removed before it could be read (not even its ``.gz`` was
    there): a live log past its backups."""
    torn_records: int = 0
    """Halves of records a writer killed mid-line left, with the next whole record on their line
    (that record is read)."""
    first_torn_record_line_numbers: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.corrupt_lines
            or self.torn_last_line
            or self.truncated_gzip
            or self.bad_run_id_records
            or self.duplicate_records
            or self.bad_spans
            or self.long_lines
            or self.torn_records
            or self.vanished
        )

    def add_corrupt(self, line_number: int) -> None:
        self.corrupt_lines += 1
        if len(self.first_corrupt_line_numbers) < _FIRST_CORRUPT_SHOWN:
            self.first_corrupt_line_numbers.append(line_number)

    def add_torn_record(self, line_number: int) -> None:
        self.torn_records += 1
        if len(self.first_torn_record_line_numbers) < _FIRST_CORRUPT_SHOWN:
            self.first_torn_record_line_numbers.append(line_number)

    def add_bad_run_id(self, line_number: int) -> None:
        self.bad_run_id_records += 1
        if len(self.first_bad_run_id_line_numbers) < _FIRST_CORRUPT_SHOWN:
            self.first_bad_run_id_line_numbers.append(line_number)

    def add_long_line(self, line_number: int) -> None:
        self.long_lines += 1
        if len(self.first_long_line_numbers) < _FIRST_CORRUPT_SHOWN:
            self.first_long_line_numbers.append(line_number)

    def message(self) -> str:
        """One line for a person, e.g. ``steps.jsonl: skipped 2 corrupt lines (lines 4, 9)``."""
        parts: list[str] = []
        if self.corrupt_lines:
            numbers = ", ".join(str(n) for n in self.first_corrupt_line_numbers)
            more = ", ..." if self.corrupt_lines > len(self.first_corrupt_line_numbers) else ""
            noun = "line" if self.corrupt_lines == 1 else "lines"
            parts.append(f"skipped {self.corrupt_lines} corrupt {noun} (line {numbers}{more})")
        if self.bad_run_id_records:
            numbers = ", ".join(str(n) for n in self.first_bad_run_id_line_numbers)
            more = ", ..." if self.bad_run_id_records > len(self.first_bad_run_id_line_numbers) else ""
            noun = "record" if self.bad_run_id_records == 1 else "records"
            what = f"{noun} whose run_id is not a string"
            parts.append(f"skipped {self.bad_run_id_records} {what} (line {numbers}{more})")
        if self.long_lines:
            numbers = ", ".join(str(n) for n in self.first_long_line_numbers)
            more = ", ..." if self.long_lines > len(self.first_long_line_numbers) else ""
            noun = "line" if self.long_lines == 1 else "lines"
            limit = max_line_bytes()
            size = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit:,} bytes"
            parts.append(
                f"skipped {self.long_lines} {noun} longer than {size} (line {numbers}{more}; "
                f"{MAX_LINE_BYTES_ENV} raises the limit)"
            )
        if self.bad_spans:
            noun = "span" if self.bad_spans == 1 else "spans"
            parts.append(f"skipped {self.bad_spans} unreadable OTLP {noun} (e.g. a timestamp out of range)")
        if self.torn_last_line:
            parts.append("skipped a torn last line (the writer probably stopped mid-write)")
        if self.vanished:
            parts.append("removed before it could be read (rotated away); its records are not counted")
        if self.torn_records:
            numbers = ", ".join(str(n) for n in self.first_torn_record_line_numbers)
            more = ", ..." if self.torn_records > len(self.first_torn_record_line_numbers) else ""
            noun = "record" if self.torn_records == 1 else "records"
            parts.append(
                f"skipped {self.torn_records} torn {noun} (line {numbers}{more}: a writer stopped"
                " mid-line; the whole record after each was read)"
            )
        if self.truncated_gzip:
            parts.append("the gzip stream ends early (file cut off); read what was there")
        if self.duplicate_records:
            noun = "record" if self.duplicate_records == 1 else "records"
            parts.append(
                f"dropped {self.duplicate_records} duplicate {noun} (spans already read from another"
                " file or earlier in this one; each span counts once)"
            )
        return f"{self.path}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "corrupt_lines": self.corrupt_lines,
            "first_corrupt_line_numbers": list(self.first_corrupt_line_numbers),
            "torn_last_line": self.torn_last_line,
            "truncated_gzip": self.truncated_gzip,
            "bad_run_id_records": self.bad_run_id_records,
            "duplicate_records": self.duplicate_records,
            "bad_spans": self.bad_spans,
            "long_lines": self.long_lines,
            "torn_records": self.torn_records,
            "vanished": self.vanished,
        }


def _is_log_file(path: Path) -> bool:
    return path.name.endswith(LOG_SUFFIXES)


def find_sources(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, directories (searched recursively) and globs into a sorted, de-duplicated
    list of log files. Raises LogError for a path that gives nothing to read."""
    found: dict[Path, None] = {}
    for raw in paths:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.is_file():
            found.setdefault(path, None)
        elif path.is_dir():
            # rerun/ holds recordings for steptrace.rerun (record_for_rerun), not step logs.
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and _is_log_file(p) and "rerun" not in p.relative_to(path).parts[:-1]
            )
            if not files:
                raise LogError(
                    f"{path}: no step logs in this directory (looked for "
                    + ", ".join(f"*{s}" for s in LOG_SUFFIXES)
                    + ")"
                )
            for file in files:
                found.setdefault(file, None)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise LogError(f"{text}: no files match this pattern")
            for file in files:
                found.setdefault(file, None)
        elif path.exists():
            raise LogError(f"{path}: not a regular file or directory")
        else:
            raise LogError(f"{path}: no such file or directory")
    # The same file named twice (a directory and a file in it) must not count its runs twice.
    unique: dict[Path, Path] = {}
    for file in found:
        # A rotated file seen while it was being compressed: the .gz is whole, read only that.
        if _ROTATED_NAME.fullmatch(file.name) and file.with_name(file.name + ".gz") in found:
            continue
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def max_line_bytes() -> int:
    """The longest line a reader takes, newline included: 64 MiB, or ``$STEPTRACE_MAX_LINE_BYTES``.

    A longer line (a corrupt file, a decompression bomb) is skipped and counted, never held whole.
    """
    value = os.environ.get(MAX_LINE_BYTES_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_LINE_BYTES
    if not value.isdecimal() or int(value) <= 0:
        raise LogError(
            f"{MAX_LINE_BYTES_ENV}={value!r}: give a number of bytes, e.g. {DEFAULT_MAX_LINE_BYTES}"
        )
    return int(value)


def _skip_rest_of_line(reader: IO[bytes], start: bytes) -> None:
    """Read on past the line ``start`` began (over the limit), in chunks, dropping them."""
    line = start
    while not line.endswith(b"\n"):
        line = reader.readline(_DISCARD_CHUNK_BYTES)
        if not line:
            return


def _open(path: Path, issue: LoadIssue) -> tuple[IO[bytes], IO[bytes]] | None:
    """(reader, raw file); the raw file's position measures progress, also under gzip.

    A log rotated while its directory is read: a ``.jsonl`` compressed and removed since it was
    listed is read from its ``.jsonl.gz``; a file gone for good is None (``issue.vanished``).
    """
    try:
        raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        try:
            if path.name.endswith(".gz"):
                raise
            path = path.with_name(path.name + ".gz")
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            issue.vanished = True
            return None
        except OSError as exc:
            raise LogError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except OSError as exc:
        raise LogError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return _reader(path, raw)


def _reader(path: Path, raw: IO[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


# Files held open from the listing on, at most: a file descriptor each.
_MAX_HELD_OPEN = 64


def hold_open(sources: Sequence[Path]) -> dict[Path, IO[bytes]]:
    """The plain (not compressed) files of ``sources`` opened now, right after listing them.

    A live log rotates while it is read: the file listed as ``steps.jsonl`` may be renamed before
    its turn comes; read from the descriptor opened here it is still the file that was listed
    (compressed files are never renamed). Pass each to the reader as ``file=``; close the rest.
    """
    held: dict[Path, IO[bytes]] = {}
    for path in sources:
        if len(held) == _MAX_HELD_OPEN:
            break
        if not path.name.endswith(".gz"):
            try:
                held[path] = open(path, "rb")  # noqa: SIM115 - closed by the reader or the caller
            except OSError:  # the reader says what is wrong, in its turn
                continue
    return held


def _otlp_value(value: Mapping[str, Any]) -> Any:
    """An OTLP JSON ``AnyValue`` as a plain Python value (intValue arrives as a string)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _otlp_attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _otlp_attributes(attributes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {a["key"]: _otlp_value(a.get("value", {})) for a in attributes}


_OTLP_STATUS = {
    0: STATUS_UNSET,
    1: STATUS_OK,
    2: STATUS_ERROR,
    "STATUS_CODE_UNSET": STATUS_UNSET,
    "STATUS_CODE_OK": STATUS_OK,
    "STATUS_CODE_ERROR": STATUS_ERROR,
}


def _hex_id(value: Any) -> str | None:
    """OTLP JSON ids are hex; some exporters write base64 (the protobuf JSON default)."""
    if not value:
        return None
    text = str(value)
    if len(text) in (16, 32) and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except ValueError:
        return text


# What one malformed span raises while it is turned into a record (an out-of-range timestamp:
# OverflowError or OSError from the platform's time functions).
_BAD_SPAN_ERRORS = (AttributeError, KeyError, TypeError, ValueError, OverflowError, OSError, RecursionError)


def records_from_otlp(
    document: Mapping[str, Any], issue: LoadIssue | None = None
) -> Iterator[dict[str, Any]]:
    """Step records for the spans of one OTLP JSON ``ExportTraceServiceRequest``.

    Spans outside any agent run (no ``steptrace.run_id``) are skipped, as the JSONL exporter does;
    so is a malformed span (counted in ``issue``), not the spans next to it.
    """
    for resource_spans in document.get("resourceSpans") or []:
        resource = _otlp_attributes((resource_spans.get("resource") or {}).get("attributes") or [])
        service = resource.get("service.name")
        for scope_spans in resource_spans.get("scopeSpans") or []:
            for span in scope_spans.get("spans") or []:
                try:
                    status = span.get("status") or {}
                    record = build_record(
                        name=span.get("name", ""),
                        trace_id=_hex_id(span.get("traceId")) or "",
                        span_id=_hex_id(span.get("spanId")) or "",
                        parent_span_id=_hex_id(span.get("parentSpanId")),
                        start_ns=int(span.get("startTimeUnixNano") or 0),
                        end_ns=int(span.get("endTimeUnixNano") or 0),
                        status=_OTLP_STATUS.get(status.get("code", 0), STATUS_UNSET),
                        status_description=status.get("message") or None,
                        attributes=_otlp_attributes(span.get("attributes") or []),
                        service=service if isinstance(service, str) else None,
                    )
                except _BAD_SPAN_ERRORS:
                    if issue is None:
                        raise
                    issue.bad_spans += 1
                    continue
                if record is not None:
                    yield record


def _json_object(line: bytes) -> dict[str, Any] | None:
    """The line's JSON object, or None for anything else (blank, not JSON, not an object)."""
    for decode in (_FULL_DECODE, json.loads):
        try:
            value = decode(line)
        except (ValueError, RecursionError):
            continue
        return value if type(value) is dict else None
    return None


def _decode_line(
    line: bytes, line_number: int, issue: LoadIssue, *, otlp: bool, fields: bool, logs: bool = False
) -> list[Any]:
    """The records in one line the fast decoder did not take, noting what is wrong in ``issue``.

    ``logs``: only log-line records (else only span records)."""
    try:
        document = _FULL_DECODE(line)
    except (ValueError, RecursionError):  # RecursionError: nested about 1,000 levels deep
        try:
            # The stdlib accepts what the writer (json.dumps) may emit, e.g. NaN.
            document = json.loads(line)
        except (ValueError, RecursionError):
            if not line.strip():
                return []
            # A writer killed mid-write, then another process's whole record on the same line.
            document = None if otlp else record_after_torn_prefix(line)
            if document is not None:
                issue.add_torn_record(line_number)
            # Only the last line can lack its newline: a writer killed mid-write.
            elif line.endswith(b"\n"):
                issue.add_corrupt(line_number)
                return []
            else:
                issue.torn_last_line = True
                return []
    if type(document) is not dict:
        issue.add_corrupt(line_number)
        return []
    if otlp:
        if "resourceSpans" not in document:
            issue.add_corrupt(line_number)
            return []
        try:
            records = list(records_from_otlp(document, issue))
        except _BAD_SPAN_ERRORS:
            issue.add_corrupt(line_number)
            return []
        if not all(type(r["run_id"]) is str for r in records):
            issue.add_bad_run_id(line_number)
            records = [r for r in records if type(r["run_id"]) is str]
        if logs:  # OTLP JSON holds spans only
            return []
    elif "run_id" in document and "type" in document:
        if type(document["run_id"]) is not str:
            issue.add_bad_run_id(line_number)
            return []
        if (document["type"] == LOG_RECORD_TYPE) is not logs:
            return []
        records = [document]
    elif "recording" in document:  # a rerun recording's line (an exported run holds both)
        return []
    else:
        issue.add_corrupt(line_number)
        return []
    return [_DictFields(r) for r in records] if fields else records


def _iter(
    path: Path,
    issue: LoadIssue,
    *,
    fields: bool,
    needle: bytes | None = None,
    progress: ProgressCallback | None = None,
    logs: bool = False,
    file: IO[bytes] | None = None,
) -> Iterator[Any]:
    """Records of one file in file order, as dicts or (``fields``) as StepFields; with ``logs``,
    only the log-line records (as dicts). ``file``: ``path`` already open (see hold_open)."""
    limit = max_line_bytes()
    opened = _open(path, issue) if file is None else _reader(path, file)
    if opened is None:
        return
    reader, raw = opened
    fields_decode = _FIELDS_DECODE if fields else None
    escaped_slash = needle is not None and b"/" in needle
    otlp: bool | None = None  # decided by the first non-blank line
    line_number = 0
    try:
        try:
            # Lines of at most ``limit`` bytes: a longer one is never held whole (C-level loop).
            for line in iter(partial(reader.readline, limit + 1), b""):
                line_number += 1
                if not line_number % _PROGRESS_EVERY_LINES and progress is not None:
                    progress(raw.tell())
                if len(line) > limit:
                    _skip_rest_of_line(reader, line)
                    issue.add_long_line(line_number)
                    continue
                if otlp is None:
                    # The format is that of the first line holding a JSON object: garbage or a
                    # torn line before it must not decide it.
                    first = _json_object(line)
                    if first is None:
                        yield from _decode_line(
                            line, line_number, issue, otlp=False, fields=fields, logs=logs
                        )
                        continue
                    otlp = "resourceSpans" in first
                    if otlp:
                        fields_decode = None  # OTLP needs whole documents
                if (
                    needle is not None
                    and needle not in line
                    and b"\\u" not in line
                    and (not escaped_slash or b"\\/" not in line)
                ):
                    # Only an escape (\u0041, \/) could spell the wanted id otherwise.
                    continue
                if fields_decode is not None and (
                    len(line) < _DEEP_LINE_BYTES or line.count(b"[") + line.count(b"{") < _DEEP_BRACKETS
                ):
                    # The common case, kept tight: a well-formed step record.
                    try:
                        step = fields_decode(line)
                    except (ValueError, RecursionError):
                        pass
                    else:
                        if type(step.run_id) is str and step.type is not None:
                            if step.type != LOG_RECORD_TYPE:  # log lines count in no aggregate
                                yield step
                            continue
                yield from _decode_line(line, line_number, issue, otlp=otlp, fields=fields, logs=logs)
        except (EOFError, zlib.error):
            # A .gz cut off by a crash: keep the records before the cut.
            issue.truncated_gzip = True
        except gzip.BadGzipFile as exc:
            raise LogError(f"{path}: not a gzip file ({exc})") from exc
        except OSError as exc:
            raise LogError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if progress is not None:
            progress(raw.tell())
    finally:
        reader.close()
        raw.close()


def run_id_needle(run_id: str) -> bytes | None:
    """Bytes every line of a run whose id starts with ``run_id`` holds, unless it spells the id
    with an escape (which the reader checks for): the id as JSON writes it, when it needs no
    escaping. None when it would."""
    if run_id.isascii() and run_id.isprintable() and '"' not in run_id and "\\" not in run_id:
        return run_id.encode("ascii")
    return None


def iter_records(path: Path, issue: LoadIssue, *, needle: bytes | None = None) -> Iterator[dict[str, Any]]:
    """Every step record in one file, as dicts, in file order. Bad lines are noted in ``issue``.

    ``needle`` (see :func:`run_id_needle`): skip, without decoding, lines that cannot hold a
    record of the runs it names (a fast pre-filter when one run is wanted; the caller still
    checks ``run_id``).
    """
    return cast(Iterator[dict[str, Any]], _iter(path, issue, fields=False, needle=needle))


def iter_step_fields(
    path: Path,
    issue: LoadIssue,
    *,
    progress: ProgressCallback | None = None,
    file: IO[bytes] | None = None,
    needle: bytes | None = None,
) -> Iterator[StepFields]:
    """Every record of one file reduced to :data:`STEP_FIELDS`: the aggregate pass's input.
    ``needle``: as for :func:`iter_records`."""
    return cast(
        Iterator[StepFields], _iter(path, issue, fields=True, progress=progress, file=file, needle=needle)
    )


def iter_log_records(
    path: Path, issue: LoadIssue, *, needle: bytes | None = None
) -> Iterator[dict[str, Any]]:
    """The captured log-line records (``type: "log"``) of one file, as dicts, in file order."""
    return cast(Iterator[dict[str, Any]], _iter(path, issue, fields=False, needle=needle, logs=True))
