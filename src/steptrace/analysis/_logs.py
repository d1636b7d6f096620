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
    found = [
        _clean(record)
        for source in runs.sources
        for record in iter_log_records(source, LoadIssue(source), needle=needle)
        if record.get("run_id") == run_id
    ]
    found.sort(key=lambda log: log["ts"])
    return found


def _start_s(record: Record) -> float:
    return float(record.get("ts") or 0.0) - float(record.get("duration_ms") or 0.0) / 1000.0


def interleave(records: Sequence[Record], logs: Sequence[Record]) -> list[Record]:
    """``records`` (spans in start order) with each log line after the last span started before it.

    A line a tool logged shows under that tool's span, before the spans that started later.
    """
    ordered = sorted(logs, key=lambda log: log["ts"])
    out: list[Record] = []
    position = 0
    for record in records:
        start = _start_s(record)
        while position < len(ordered) and ordered[position]["ts"] < start and out:
            out.append(ordered[position])
            position += 1
        out.append(record)
    out.extend(ordered[position:])
    return out


def log_depths(rows: Sequence[Record], depths: Sequence[int]) -> list[int]:
    """Depths for ``rows`` (spans and logs); ``depths`` are the spans' own, in order. A log line
    sits one level under the span it was logged in."""
    by_span: dict[Any, int] = {}
    span_depths = iter(depths)
    out: list[int] = []
    for row in rows:
        if row.get("type") == "log":
            out.append(by_span.get(row.get("span_id"), -1) + 1)
        else:
            depth = next(span_depths, 0)
            by_span[row.get("span_id")] = depth
            out.append(depth)
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
