"""Captured log lines (``type: "log"`` records) of one run, placed among its spans.

``configure(capture_logs=...)`` writes the application's log records made inside a run next to
the step records. They are not spans: the aggregates and ``Run.records()`` skip them, and this
module reads them for the commands that show one run (``replay``, ``view``, ``debug``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from steptrace.analysis._loading import LoadIssue, iter_log_records
from steptrace.analysis._runs import Record, Run, RunSet

_WARNING = logging.WARNING


def _text(value: Any) -> str:
    return value if type(value) is str else "" if value is None else str(value)


def _clean(record: Record) -> Record:
    """A log record with its fields of the documented types, whatever a hand-edited file holds."""
    out = dict(record)
    level = _text(record.get("level")) or "INFO"
    levelno = record.get("levelno")
    if type(levelno) is not int:
        named = logging.getLevelName(level.upper())
        levelno = named if isinstance(named, int) else logging.INFO
    ts: Any = record.get("ts")
    agent_step = record.get("agent_step")
    out.update(
        type="log",
        level=level,
        levelno=levelno,
        logger=_text(record.get("logger") or record.get("name")),
        message=_text(record.get("message")),
        span_id=_text(record.get("span_id")) or None,
        trace_id=_text(record.get("trace_id")) or None,
        ts=float(ts) if type(ts) in (int, float) else 0.0,
        agent_step=agent_step if type(agent_step) is int else None,
    )
    return out


def run_logs(runs: RunSet, run: Run | str) -> list[Record]:
    """The log lines captured in ``run`` (a Run of ``runs`` or its id), oldest first.

    >>> runs = load("steptrace-logs")  # doctest: +SKIP
    >>> [log["message"] for log in run_logs(runs, runs.get("run-42"))]  # doctest: +SKIP
    """
    run_id = run if isinstance(run, str) else run.run_id
    needle = run_id.encode() if run_id.isascii() and run_id.isprintable() and '"' not in run_id else None
    # One line reaches several files (the step log and an archived copy, the spill file): each
    # counts once. A line repeated within one file (the same message twice in a microsecond) is
    # kept as often as the file that holds it most often.
    kept: dict[tuple[Any, ...], list[Record]] = {}
    for source in runs.sources:
        in_file: dict[tuple[Any, ...], list[Record]] = {}
        for record in iter_log_records(source, LoadIssue(source), needle=needle):
            if record.get("run_id") == run_id:
                log = _clean(record)
                in_file.setdefault(_identity(log), []).append(log)
        for key, copies in in_file.items():
            if len(copies) > len(kept.get(key, ())):
                kept[key] = copies
    found = [log for copies in kept.values() for log in copies]
    found.sort(key=lambda log: log["ts"])
    return found


def _identity(log: Record) -> tuple[Any, ...]:
    """What tells two captured lines apart: where and when, at which level, saying what."""
    exception = log.get("exception")
    return (
        log["trace_id"],
        log["span_id"],
        log["ts"],
        log["levelno"],
        log["logger"],
        log["message"],
        exception if exception is None or type(exception) is str else str(exception),
    )


def _start_s(record: Record) -> float:
    return float(record.get("ts") or 0.0) - float(record.get("duration_ms") or 0.0) / 1000.0


def interleave(records: Sequence[Record], logs: Sequence[Record]) -> list[Record]:
    """``records`` (spans in start order) with each log line after the last span started before it.

    A line a tool logged shows under that tool's span, before the spans that started later.
    """
    placed = place_logs(records, logs)
    out: list[Record] = []
    for record, after in zip(records, placed, strict=True):
        out.append(record)
        out.extend(after)
    if not records:
        out.extend(sorted(logs, key=lambda log: log["ts"]))
    return out


def place_logs(records: Sequence[Record], logs: Sequence[Record]) -> list[list[Record]]:
    """For each of ``records`` (spans in start order), the log lines to show right after it: those
    logged after it started and before the next span started (lines before the first span go
    after the first)."""
    ordered = sorted(logs, key=lambda log: log["ts"])
    placed: list[list[Record]] = [[] for _ in records]
    if not records:
        return placed
    starts = [_start_s(record) for record in records]
    index = 0
    for log in ordered:
        while index + 1 < len(records) and starts[index + 1] <= log["ts"]:
            index += 1
        placed[index].append(log)
    return placed


def tree_with_logs(rows: Sequence[tuple[Record, int]], logs: Sequence[Record]) -> list[tuple[Record, int]]:
    """Waterfall rows (record, depth) in tree order with each log line inside its span's subtree:
    after the last row of that subtree that started before the line, one level under the span."""
    out = list(rows)
    for log in sorted(logs, key=lambda entry: entry["ts"]):
        at = next(
            (
                i
                for i, (row, _) in enumerate(out)
                if row.get("type") != "log" and row.get("span_id") == log["span_id"]
            ),
            None,
        )
        if at is None:  # its span is not in the log (cut off, another file): by time, at the top
            later = next((i for i, (row, _) in enumerate(out) if _start_s(row) > log["ts"]), len(out))
            out.insert(later, (log, 0))
            continue
        depth = out[at][1]
        position = at + 1
        while position < len(out) and out[position][1] > depth:
            row = out[position][0]
            start = row["ts"] if row.get("type") == "log" else _start_s(row)
            if start > log["ts"]:
                break
            position += 1
        out.insert(position, (log, depth + 1))
    return out


def log_line(log: Record) -> str:
    """``WARNING myagent.tools: disk almost full`` (the exception, if any, after a dash)."""
    text = f"{log['level']} {log['logger']}: {log['message']}"
    exception = log.get("exception")
    return f"{text} — {exception}" if exception else text


def last_warning_before(logs: Sequence[Record], error: Record | None) -> Record | None:
    """The last line at WARNING or above logged before ``error`` (a failed span) ended.

    Without an error: None. A line logged in the failing span itself counts (it is "before" the
    failure the span reports when it ends).
    """
    if error is None:
        return None
    end = float(error.get("ts") or 0.0)
    earlier = [log for log in logs if log["levelno"] >= _WARNING and log["ts"] <= end]
    return earlier[-1] if earlier else None


def last_warning_of(run: Run, logs: Sequence[Record], first_error_span_id: str | None) -> Record | None:
    """The last warning before the failure of span ``first_error_span_id`` (debug's first error)."""
    if first_error_span_id is None:
        return None
    error = next((r for r in run.records() if r.get("span_id") == first_error_span_id), None)
    return last_warning_before(logs, error)


def warning_summary(log: Record | None) -> dict[str, Any] | None:
    """The fields of a quoted log line in ``debug --json``."""
    if log is None:
        return None
    keys = ("level", "logger", "message", "exception", "agent_step", "trace_id", "span_id", "ts")
    return {key: log.get(key) for key in keys}
