"""What every command's SQL shares: a statement with its bound values (:class:`Query`), the
window of spans a command reads (:class:`Window`), the schema check, the span columns.

Values never enter the SQL text: each is a ``{name:Type}`` placeholder the server binds. The
text holds only this package's own SQL, the validated table name and steptrace's attribute keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

RUN_MARGIN = timedelta(hours=1)
"""Spans are read this far outside the window, so a run that starts inside it is read whole
(its later spans) and one that started before it is recognised as such (its run span)."""
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2262, 4, 11, 23, 47, 16, tzinfo=timezone.utc)
"""The range of ``DateTime64(9)`` (``Timestamp``): a window reaching past it is clamped to it."""
TIME = "DateTime64(9, 'UTC')"
_KEY = re.compile(r"[a-z_][a-z0-9_.]*")

# The columns the queries read, with the exporter's types (the type's start is enough: CODECs
# and LowCardinality wrappers vary between exporter versions).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "Timestamp": ("DateTime64",),
    "TraceId": ("String",),
    "SpanId": ("String",),
    "ParentSpanId": ("String",),
    "SpanName": ("LowCardinality(String)", "String"),
    "ServiceName": ("LowCardinality(String)", "String"),
    "SpanAttributes": ("Map(LowCardinality(String), String)", "Map(String, String)"),
    "Duration": ("UInt64", "Int64"),
    "StatusCode": ("LowCardinality(String)", "String"),
    "StatusMessage": ("String",),
}

# Every command's first statement: is the table there, with the exporter's columns?
COLUMNS_SQL = """SELECT name, type FROM system.columns
WHERE database = {database:String} AND table = {table:String}"""

ONE_COPY_PER_SPAN = "LIMIT 1 BY SpanAttributes['steptrace.run_id'], TraceId, SpanId"
"""A span the collector inserted twice (a retried batch) counts once: one row per run, trace and
span id, the JSONL reader's key."""

# The columns record_from_row reads, in its order.
RECORD_COLUMNS = """    SpanName,
    TraceId,
    SpanId,
    ParentSpanId,
    toUnixTimestamp64Nano(Timestamp) AS start_ns,
    Duration,
    StatusCode,
    StatusMessage,
    SpanAttributes,
    ServiceName"""


@dataclass(frozen=True)
class Query:
    """One statement and the values of its ``{name:Type}`` placeholders."""

    sql: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


def key(name: str) -> str:
    """An attribute key of steptrace's as a SQL string (keys are fixed words and dots)."""
    if not _KEY.fullmatch(name):
        raise ValueError(f"not an attribute key: {name!r}")
    return f"'{name}'"


def merged(*parameter_sets: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of fragments that make one statement (a name binds one value)."""
    out: dict[str, Any] = {}
    for parameters in parameter_sets:
        for name, value in parameters.items():
            if name in out and out[name] != value:
                raise ValueError(f"parameter {name!r} bound twice")
            out[name] = value
    return out


def time_text(moment: datetime) -> str:
    """A moment as ClickHouse reads a ``DateTime64(9, 'UTC')`` parameter."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def epoch_ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def from_epoch_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc) + timedelta(
        microseconds=(ns % 1_000_000_000) // 1000
    )


def indented(sql: str, spaces: int = 4) -> str:
    """A statement nested in another (only SQL of this package: values are parameters)."""
    return "\n".join(" " * spaces + line if line else line for line in sql.split("\n"))


@dataclass(frozen=True)
class Window:
    """The runs a command reads: started in ``[since, until)``, of one service or all. Bounds
    outside what ``Timestamp`` can hold are clamped (no span is outside them)."""

    since: datetime
    until: datetime | None
    service: str | None

    @property
    def first(self) -> datetime:
        return min(max(self.since, EARLIEST), LATEST)

    @property
    def last(self) -> datetime | None:
        return max(self.until, EARLIEST) if self.until is not None and self.until < LATEST else None

    def span_range(self) -> tuple[datetime, datetime | None]:
        """The spans read for the window's runs: ``RUN_MARGIN`` either side, within the range."""
        first, last = self.first, self.last
        lower = first - RUN_MARGIN if first - EARLIEST >= RUN_MARGIN else EARLIEST
        upper = last + RUN_MARGIN if last is not None and LATEST - last > RUN_MARGIN else None
        return lower, upper

    def spans_where(self, lower: datetime | None = None, upper: datetime | None = None) -> Query:
        """``Timestamp`` within ``[lower, upper)`` (the window's span range by default) and the
        service: the predicates that prune partitions and the sort key's first column."""
        if lower is None:
            lower, upper = self.span_range()
        lower = min(max(lower, EARLIEST), LATEST)
        clauses, parameters = [f"Timestamp >= {{lower:{TIME}}}"], {"lower": time_text(lower)}
        if upper is not None and upper < LATEST:
            upper = max(upper, EARLIEST)
            clauses.append(f"Timestamp < {{upper:{TIME}}}")
            parameters["upper"] = time_text(upper)
        if self.service is not None:
            clauses.append("ServiceName = {service:String}")
            parameters["service"] = self.service
        return Query("\n      AND ".join(clauses), parameters)

    def runs_having(self) -> Query:
        """The run's start (``started_ns``) in the window."""
        clauses, parameters = ["started_ns >= {since_ns:Int64}"], {"since_ns": epoch_ns(self.first)}
        last = self.last
        if last is not None:
            clauses.append("started_ns < {until_ns:Int64}")
            parameters["until_ns"] = epoch_ns(last)
        return Query(" AND ".join(clauses), parameters)
