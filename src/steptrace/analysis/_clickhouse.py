"""ClickHouse as an analysis source: the ``otel_traces`` table the Collector's ``clickhouse``
exporter writes, read as a :class:`RunSet`.

The per-run aggregates are one ``GROUP BY`` in the database (a row per run, not per span);
``runs()`` filters, orders and pages there (only the page is read) and ``diff`` is a
``GROUP BY release`` on top (:meth:`ClickHouseRunSet.side_stats`). A run's spans are fetched
only when a command reads them, and become step records through the same ``build_record`` the
JSONL exporter uses. Python keeps the run record (``build_record``) and pricing: both must match
the JSONL path to the last bit. Database access is one small interface (:class:`Database`), so
the tests run the same SQL on the in-process engine (chdb).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TextIO, cast
from urllib.parse import parse_qs, unquote, urlsplit

from steptrace import _attributes as A
from steptrace._errors import LogError
from steptrace._pricing import Pricer, PricesSource
from steptrace._records import STATUS_ERROR, STATUS_OK, STATUS_UNSET, build_record, iso_utc
from steptrace.analysis._diff import SideStats
from steptrace.analysis._loading import LoadIssue, StepFields, _DictFields
from steptrace.analysis._runs import (
    STOP_INCOMPLETE,
    Record,
    Run,
    RunSet,
    _accumulate,
    _Accumulator,
    _finish,
    parse_duration_ms,
    parse_time,
)

PASSWORD_ENV = "STEPTRACE_CLICKHOUSE_PASSWORD"
DEFAULT_TABLE = "otel_traces"
DEFAULT_WINDOW = timedelta(hours=24)
"""How far back a query looks when no ``since`` is given: keeps a first command on a big table cheap."""
DEFAULT_MAX_EXECUTION_SECONDS = 60
RUN_MARGIN = timedelta(hours=1)
"""Spans are read this far outside the window, so a run that starts inside it is read whole
(its later spans) and one that started before it is recognised as such (its run span)."""
SCHEMES = {"clickhouse": False, "clickhouses": True}  # scheme -> TLS
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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

# The exporter writes every attribute as text (pcommon ``AsString``). These are the keys whose
# values steptrace wrote as numbers, booleans or arrays; turned back, the step record is the
# one the JSONL exporter wrote. Any other attribute stays text.
_INT_KEYS = frozenset(
    {
        A.STEP, A.AGENT_STEP_NUMBER, A.GEN_AI_USAGE_INPUT_TOKENS, A.GEN_AI_USAGE_OUTPUT_TOKENS,
        A.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, A.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        A.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, A.RUN_STEPS, A.RUN_LLM_CALLS,
        A.RUN_LLM_CALLS_WITHOUT_USAGE, A.RUN_TOOL_CALLS, A.RUN_INPUT_TOKENS, A.RUN_OUTPUT_TOKENS,
        A.RUN_ERRORS, A.GEN_AI_REQUEST_MAX_TOKENS, A.GEN_AI_REQUEST_TOP_K, A.SERVER_PORT,
    }
)  # fmt: skip
_FLOAT_KEYS = frozenset(
    {A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, A.GEN_AI_REQUEST_TEMPERATURE, A.GEN_AI_REQUEST_TOP_P}
)
_BOOL_KEYS = frozenset(
    {
        A.GEN_AI_REQUEST_STREAM,
        A.AGENT_STEP_ENDS_RUN,
        A.LLM_USAGE_MISSING,
        A.LLM_STREAM_COMPLETED,
        A.CANCELLED,
        A.RERUN_SERVED,
    }
)
_ARRAY_KEYS = frozenset({A.GEN_AI_RESPONSE_FINISH_REASONS, A.GEN_AI_REQUEST_STOP_SEQUENCES})
# The run span's attributes a run is made of (what _runs._accumulate reads of a run record:
# agent, release, conversation, stop reason, the errors the core counted): only these cross the
# wire with the per-run aggregates; debug/replay/view fetch a run's spans whole.
_RUN_RECORD_KEYS = frozenset(
    {
        A.GEN_AI_AGENT_NAME,
        A.GEN_AI_AGENT_VERSION,
        A.GEN_AI_CONVERSATION_ID,
        A.STOP_REASON,
        A.RUN_ERRORS,
        A.RERUN_OF,
    }
)
# Older exporter versions copied the scope into the span attributes; it is not the span's.
_EXPORTER_ADDED_KEYS = frozenset({"otel.scope.name", "otel.scope.version"})
_STATUS = {
    "Ok": STATUS_OK,
    "Error": STATUS_ERROR,
    "Unset": STATUS_UNSET,
    "STATUS_CODE_OK": STATUS_OK,
    "STATUS_CODE_ERROR": STATUS_ERROR,
    "STATUS_CODE_UNSET": STATUS_UNSET,
}


class ClickHouseError(LogError):
    """The database cannot answer (unreachable, credentials, table, schema, limits): one line, exit 2."""


class Database(Protocol):
    """What the queries need from a ClickHouse connection: rows of a SELECT, as sequences."""

    def query(self, sql: str) -> Sequence[Sequence[Any]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ClickHouseURL:
    """``clickhouse[s]://USER@HOST:PORT/DATABASE?table=otel_traces[&max_execution_time=60]``."""

    host: str
    port: int
    user: str
    database: str
    table: str
    secure: bool
    max_execution_time: int = DEFAULT_MAX_EXECUTION_SECONDS
    """Seconds, sent with every query; 0 sends none (the user's profile decides)."""

    @classmethod
    def parse(cls, url: str) -> ClickHouseURL:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ClickHouseError(
                f"{url}: not a ClickHouse URL; write clickhouse://USER@HOST:PORT/DATABASE?table=otel_traces"
                " (clickhouses:// for TLS)"
            )
        secure = SCHEMES[parts.scheme]
        if parts.password is not None:
            raise ClickHouseError(
                f"put the ClickHouse password in {PASSWORD_ENV}, not in the URL (it would end up in "
                "shell history and process lists)"
            )
        try:
            port = parts.port or (8443 if secure else 8123)
        except ValueError:
            raise ClickHouseError(f"{url}: the port is not a number") from None
        query = parse_qs(parts.query)
        database = unquote(parts.path.lstrip("/")) or "default"
        table = query.get("table", [DEFAULT_TABLE])[-1]
        for what, name in (("database", database), ("table", table)):
            if not _IDENTIFIER.match(name):
                raise ClickHouseError(f"{url}: {what} name {name!r} is not a plain identifier")
        limit_text = query.get("max_execution_time", [str(DEFAULT_MAX_EXECUTION_SECONDS)])[-1]
        if not limit_text.isdigit():
            raise ClickHouseError(
                f"{url}: max_execution_time must be a whole number of seconds (0: the server's own limit)"
            )
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username) if parts.username else "default",
            database=database,
            table=table,
            secure=secure,
            max_execution_time=int(limit_text),
        )

    @property
    def qualified_table(self) -> str:
        return f"{self.database}.{self.table}"

    def display(self) -> str:
        """The URL without secrets, for messages."""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}?table={self.table}"


def is_clickhouse_url(text: str) -> bool:
    return text.split("://", 1)[0] in SCHEMES and "://" in text


# --- the client -----------------------------------------------------------------------------


class _ConnectDatabase:
    """:class:`Database` over clickhouse-connect (the HTTP interface: 8123, or 8443 with TLS)."""

    def __init__(self, url: ClickHouseURL) -> None:
        try:
            import clickhouse_connect
        except ImportError:
            raise ClickHouseError(
                "the ClickHouse source needs clickhouse-connect: pip install 'steptrace[clickhouse]'"
            ) from None
        self._url = url
        try:
            self._client = clickhouse_connect.get_client(
                host=url.host,
                port=url.port,
                username=url.user,
                password=os.environ.get(PASSWORD_ENV, ""),
                database=url.database,
                secure=url.secure,
                connect_timeout=10,
                send_receive_timeout=(url.max_execution_time or 300) + 10,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise translate_error(exc, url) from None

    def query(self, sql: str) -> Sequence[Sequence[Any]]:
        try:
            return self._client.query(sql).result_rows
        except Exception as exc:
            raise translate_error(exc, self._url) from None

    def close(self) -> None:
        self._client.close()


ConnectFunction = Callable[[ClickHouseURL], Database]
_connect: ConnectFunction = _ConnectDatabase


def use_database(connect: ConnectFunction | None) -> None:
    """Route every ClickHouse URL to ``connect(url)`` (the tests pass chdb); None restores the client."""
    global _connect
    _connect = connect if connect is not None else _ConnectDatabase


_CODE = re.compile(r"Code: (\d+)")


def translate_error(exc: BaseException, url: ClickHouseURL) -> ClickHouseError:
    """A database or network failure as one line for a person."""
    text = " ".join(str(exc).split())
    match = _CODE.search(text)
    code = int(match.group(1)) if match else None
    where = url.display()
    if code in (516, 192, 193, 194, 195):  # AUTHENTICATION_FAILED, UNKNOWN_USER, *_PASSWORD
        return ClickHouseError(
            f"{where}: ClickHouse refused the credentials of user {url.user!r} (set {PASSWORD_ENV})"
        )
    if code in (60, 81):  # UNKNOWN_TABLE, UNKNOWN_DATABASE
        return missing_table(url)
    if code == 159:  # TIMEOUT_EXCEEDED
        return ClickHouseError(
            f"{where}: the query ran longer than max_execution_time={url.max_execution_time}s; "
            "narrow it with --since/--until or --service, or raise ?max_execution_time="
        )
    if code == 164:  # READONLY: a readonly=1 user may not set max_execution_time
        return ClickHouseError(
            f"{where}: user {url.user!r} may not change settings (readonly=1), so the query's "
            "max_execution_time is refused; give the user readonly=2, or add ?max_execution_time=0 "
            "to rely on its profile's own limit"
        )
    if code == 47:  # UNKNOWN_IDENTIFIER: a column the exporter's schema has
        return ClickHouseError(
            f"{where}: {url.qualified_table} lacks a column the queries read ({text[:160]})"
        )
    if code is None and _is_network_error(exc, text):
        return ClickHouseError(
            f"{where}: cannot reach ClickHouse ({text[:120]}); steptrace uses the HTTP interface "
            "(port 8123, or 8443 with clickhouses://), not the native protocol (9000)"
        )
    return ClickHouseError(f"{where}: ClickHouse error: {text[:200]}")


def _is_network_error(exc: BaseException, text: str) -> bool:
    if isinstance(exc, OSError):
        return True
    name = type(exc).__name__
    words = ("Connection refused", "Max retries", "timed out", "Name or service not known", "connect")
    return name == "OperationalError" or any(word in text for word in words)


def missing_table(url: ClickHouseURL) -> ClickHouseError:
    return ClickHouseError(
        f"{url.display()}: no table {url.qualified_table}; the Collector's clickhouse exporter "
        "creates it (create_schema: true) once it has written traces, or pass ?table=NAME"
    )


# --- SQL --------------------------------------------------------------------------------------


def literal(value: Any) -> str:
    """A ClickHouse literal: quoted, escaped text; numbers; datetimes as DateTime64(9) in UTC."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        stamp = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"toDateTime64('{stamp}', 9, 'UTC')"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}")


def _render(template: str, **values: Any) -> str:
    return string.Template(template).substitute({k: literal(v) for k, v in values.items()})


_COLUMNS_SQL = """SELECT name, type FROM system.columns
WHERE database = $database AND table = $table"""

# One row per span of the window, with the fields the aggregates read.
_SPANS_OF_WINDOW = """SELECT
        SpanAttributes['steptrace.run_id'] AS run_id,
        SpanName,
        TraceId,
        SpanId,
        ParentSpanId,
        ServiceName,
        Duration,
        StatusCode,
        StatusMessage,
        SpanAttributes,
        toUnixTimestamp64Nano(Timestamp) AS start_ns,
        start_ns + toInt64(Duration) AS end_ns,
        StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS is_error,
        SpanName = 'tool_execution' AS is_tool,
        if(mapContains(SpanAttributes, 'gen_ai.tool.name'), SpanAttributes['gen_ai.tool.name'], SpanName)
            AS tool_name,
        mapContains(SpanAttributes, 'steptrace.tool.args_hash') AS has_args_hash,
        SpanName NOT IN ('agent_run', 'llm_request', 'tool_execution') AS names_agent
    FROM $table
    WHERE $where"""

_RUN_COLUMNS = """    run_id,
    record_count,
    first_start_ns,
    last_end_ns,
    run_spans,
    run_span,
    agent_steps,
    llm_calls,
    tool_calls,
    input_tokens,
    output_tokens,
    cache_read_tokens,
    cache_write_tokens,
    errors,
    repeated_calls,
    tools,
    llm_calls_by_end,
    step_agent,
    has_step_agent,
    step_release,
    has_step_release,
    step_agents"""
"""The per-run row load_runs reads (Source._run unpacks it in this order)."""

_RUNS_SQL = """SELECT
$columns
FROM (
$aggregates
)
ORDER BY first_start_ns, run_id"""

# One row per run of the window: what a run is made of, each an aggregate of its spans.
_RUN_AGGREGATES_SQL = """    SELECT
        run_id,
        count() AS record_count,
        min(start_ns) AS first_start_ns,
        max(end_ns) AS last_end_ns,
        countIf(SpanName = 'agent_run') AS run_spans,
        -- The run span (one per run), what the run record is made of: it becomes the run
        -- record. The last to end wins, as the last run record read does. (groupArray, not
        -- argMax: argMax copies a tuple holding a Map value by value, four times slower.)
        arrayElement(arraySort(x -> x.1 + toInt64(x.2), groupArrayIf(
            tuple(start_ns, Duration, StatusCode,
                  mapFilter((k, v) -> k IN $run_record_keys, SpanAttributes), ServiceName),
            SpanName = 'agent_run')), -1) AS run_span,
        if(run_spans > 0, run_span.1, first_start_ns) AS started_ns,
        countIf(SpanName = 'agent_step') AS agent_steps,
        countIf(SpanName = 'llm_request') AS llm_calls,
        countIf(is_tool) AS tool_calls,
        sumIf(toInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens']), SpanName = 'llm_request')
            AS input_tokens,
        sumIf(toInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens']), SpanName = 'llm_request')
            AS output_tokens,
        sumIf(toInt64OrZero(SpanAttributes['gen_ai.usage.cache_read.input_tokens']),
              SpanName = 'llm_request') AS cache_read_tokens,
        sumIf(toInt64OrZero(SpanAttributes['gen_ai.usage.cache_creation.input_tokens']),
              SpanName = 'llm_request') AS cache_write_tokens,
        -- The failed spans (few): root causes are those none of whose children failed.
        groupArrayIf(tuple(SpanId, ParentSpanId), is_error) AS errors,
        -- The same tool with the same arguments again: every call after the first.
        countIf(is_tool AND has_args_hash)
            - uniqExactIf(tuple(tool_name, SpanAttributes['steptrace.tool.args_hash']),
                          is_tool AND has_args_hash) AS repeated_calls,
        -- Calls per tool, in the order of each tool's first call to end (the JSONL order); the
        -- per-call durations are a query of their own, sent only when they are read.
        sumMapIf(([tool_name], [toUInt64(1)]), is_tool) AS tool_counts,
        minMapIf(([tool_name], [end_ns]), is_tool) AS tool_first_ends,
        arrayMap(x -> (x.1, x.2), arraySort(x -> x.3,
            arrayZip(tool_counts.1, tool_counts.2, tool_first_ends.2))) AS tools,
        groupArrayIf((tool_name, Duration), is_tool) AS tool_call_durations,
        -- What pricing reads of each model call, in end order (the JSONL pass adds the costs up
        -- in that order): the start minute (prices change by date), provider, model, usage.
        arrayMap(x -> tuple(intDiv(x.2, 60000000000), x.3, x.4, x.5, x.6, x.7, x.8, x.9, x.10, x.11),
        arraySort(x -> x.1, groupArrayIf(tuple(end_ns, start_ns,
            if(mapContains(SpanAttributes, 'gen_ai.provider.name'),
               SpanAttributes['gen_ai.provider.name'], NULL),
            coalesce(nullIf(SpanAttributes['gen_ai.response.model'], ''),
                     nullIf(SpanAttributes['gen_ai.request.model'], '')),
            toInt64OrNull(SpanAttributes['gen_ai.usage.input_tokens']),
            toInt64OrNull(SpanAttributes['gen_ai.usage.output_tokens']),
            toInt64OrNull(SpanAttributes['gen_ai.usage.cache_read.input_tokens']),
            toInt64OrNull(SpanAttributes['gen_ai.usage.cache_creation.input_tokens']),
            toInt64OrNull(SpanAttributes['gen_ai.usage.reasoning.output_tokens']),
            -- served by a rerun from its recording: not paid for
            SpanAttributes['steptrace.rerun.served'] = 'true',
            is_error),
            SpanName = 'llm_request'))) AS llm_calls_by_end,
        -- A run without a run span (crashed, still going) takes its agent from the first step.
        argMinIf(SpanAttributes['gen_ai.agent.name'], end_ns,
            names_agent AND mapContains(SpanAttributes, 'gen_ai.agent.name')) AS step_agent,
        countIf(names_agent AND mapContains(SpanAttributes, 'gen_ai.agent.name')) > 0 AS has_step_agent,
        argMinIf(SpanAttributes['gen_ai.agent.version'], end_ns,
            names_agent AND mapContains(SpanAttributes, 'gen_ai.agent.version')) AS step_release,
        countIf(names_agent AND mapContains(SpanAttributes, 'gen_ai.agent.version')) > 0 AS has_step_release,
        -- Every agent that ran a step (after a handoff, the agent handed to), in start order.
        arrayMap(x -> x.2, arraySort(x -> x.1, groupArrayIf(
            tuple(start_ns, SpanAttributes['gen_ai.agent.name']),
            SpanName = 'agent_step' AND mapContains(SpanAttributes, 'gen_ai.agent.name')))) AS step_agents
    FROM (
    $spans
    )
    WHERE run_id != ''
    GROUP BY run_id
    HAVING $having"""


def _percentile_sql(values: str, pct: int) -> str:
    """``_stats.percentile(values, pct)`` of a sorted array, in SQL: the same rank, the same
    interpolation, operation by operation (so the same float), not ClickHouse's quantile*."""
    rank = f"((length({values}) - 1) * {pct} / 100.)"
    low = f"arrayElement({values}, toUInt64(floor({rank})) + 1)"
    high = f"arrayElement({values}, toUInt64(ceil({rank})) + 1)"
    return f"{low} + ({high} - {low}) * ({rank} - floor({rank}))"


# What ``diff`` compares, per release: each run's metrics (as _runs._finish makes them of a run
# record, or of a run without one), then one row per release. Cost is the one part priced in
# Python (genai-prices): the model calls of each run that made any, in run order.
_RELEASES_SQL = """SELECT
    release,
    count() AS runs,
    countIf(failed) AS failed_runs,
    countIf(status = 'error') AS stopped_failed_runs,
    sum(tokens) AS tokens,
    countIf(repeated_calls > 0) AS repeated_runs,
    arraySort(groupArray(duration_ms)) AS durations,
    $p50 AS p50_duration_ms,
    $p95 AS p95_duration_ms,
    sumMap(([stop_reason], [toUInt64(1)])) AS stops,
    groupArrayArray(tool_call_durations) AS calls,
    arrayMap(tool -> (tool, $tool_p95),
        arrayDistinct(arrayMap(c -> c.1, calls))) AS tool_p95,
    arraySort(x -> (x.1, x.2), groupArrayIf(tuple(started_us, run_id, llm_calls_by_end), llm_calls > 0))
        AS priced_runs
FROM (
$metrics
)
WHERE release IS NOT NULL$predicates
GROUP BY release"""

# Each run's fields as Run has them (_runs._finish of the aggregates), for the predicates and
# orders of runs() and for diff: release, agent, stop reason, status, duration, steps, ...
_RUN_METRICS_SQL = """    SELECT
        *,
        intDiv(if(run_spans > 0, run_span.1, first_start_ns), 1000) AS started_us,
        if(run_spans > 0,
           if(mapContains(run_span.4, $version_key), run_span.4[$version_key], NULL),
           if(has_step_release, step_release, NULL)) AS release,
        if(run_spans > 0,
           if(mapContains(run_span.4, $agent_key), run_span.4[$agent_key], NULL),
           if(has_step_agent, step_agent, NULL)) AS agent,
        if(run_spans > 0 AND mapContains(run_span.4, $conversation_key), run_span.4[$conversation_key], NULL)
            AS conversation_id,
        if(run_spans > 0, if(run_span.4[$stop_key] = '', 'unknown', run_span.4[$stop_key]), $incomplete)
            AS stop_reason,
        if(run_spans > 0 AND (run_span.3 IN ('Error', 'STATUS_CODE_ERROR') OR stop_reason = 'error'), 'error',
           if(run_spans > 0, 'ok', NULL)) AS status,
        if(agent_steps > 0, agent_steps, llm_calls + tool_calls) AS total_steps,
        -- A run without a run span lasts from its first start to its last end, in microseconds
        -- from the epoch (the run's started_at), as _finish computes it.
        if(run_spans > 0, run_span.2 / 1e6,
           greatest(0., last_end_ns / 1e9 * 1000. - started_us / 1000000 * 1000.)) AS duration_ms,
        input_tokens + output_tokens AS tokens,
        run_spans > 0 AND mapContains(run_span.4, $rerun_key) AS is_rerun,
        -- The run record's error count when it is a count; else (a crash) the root causes.
        if(run_spans > 0 AND (NOT mapContains(run_span.4, $errors_key)
                              OR toInt64OrNull(run_span.4[$errors_key]) >= 0),
           ifNull(toInt64OrNull(run_span.4[$errors_key]), 0),
           length(arrayFilter(e -> NOT has(arrayMap(x -> x.2, errors), e.1), errors))) > 0 AS failed
    FROM (
    $aggregates
    )"""

# The runs runs() selects, in its order, one page of them: the filters as predicates on the
# runs' fields, the order and the page size in the database; matched counts every match.
_RUNS_PAGE_SQL = """SELECT
$columns,
    count() OVER () AS matched
FROM (
$metrics
)
WHERE $predicates
ORDER BY $order$limit"""

_TOOL_DURATIONS_SQL = """SELECT
    run_id,
    arrayMap(x -> (x.2, x.3), arraySort(x -> x.1, groupArray(tuple(end_ns, tool_name, Duration)))) AS calls
FROM (
    SELECT
        SpanAttributes['steptrace.run_id'] AS run_id,
        toUnixTimestamp64Nano(Timestamp) + toInt64(Duration) AS end_ns,
        if(mapContains(SpanAttributes, 'gen_ai.tool.name'), SpanAttributes['gen_ai.tool.name'], SpanName)
            AS tool_name,
        Duration
    FROM $table
    WHERE $where
)
WHERE run_id != ''
GROUP BY run_id"""

_RUN_SPANS_SQL = """SELECT
    SpanName,
    TraceId,
    SpanId,
    ParentSpanId,
    toUnixTimestamp64Nano(Timestamp) AS start_ns,
    Duration,
    StatusCode,
    StatusMessage,
    SpanAttributes,
    ServiceName
FROM $table
WHERE $where
ORDER BY Timestamp, SpanId"""


def typed_attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    """Span attributes as the application set them, from the exporter's text values."""
    out: dict[str, Any] = {}
    for key, text in attributes.items():
        if key in _EXPORTER_ADDED_KEYS:
            continue
        value: Any = text
        try:
            if key in _INT_KEYS:
                value = int(text)
            elif key in _FLOAT_KEYS:
                value = float(Decimal(text))
            elif key in _BOOL_KEYS and text in ("true", "false"):
                value = text == "true"
            elif key in _ARRAY_KEYS:
                parsed = json.loads(text)
                value = parsed if isinstance(parsed, list) else text
        except ValueError:
            value = text  # not what steptrace writes there: keep the text
        out[key] = value
    return out


def record_from_row(row: Sequence[Any]) -> dict[str, Any] | None:
    """The step record of one ``otel_traces`` row (the columns of the run-spans query)."""
    name, trace_id, span_id, parent, start_ns, duration, status, message, attributes, service = row
    start = int(start_ns)
    # As the JSONL exporter does: a span that did not fail is "ok", and only a failure has a
    # description (an unset status is "ok" there too).
    failed = _STATUS.get(str(status)) == STATUS_ERROR
    return build_record(
        name=str(name),
        trace_id=str(trace_id).lower(),
        span_id=str(span_id).lower(),
        parent_span_id=str(parent).lower() or None,
        start_ns=start,
        end_ns=start + int(duration),
        status=STATUS_ERROR if failed else STATUS_OK,
        status_description=(str(message) or None) if failed else None,
        attributes=typed_attributes(attributes),
        service=str(service) or None,
    )


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Decoding an answer and turning its rows into runs allocates millions of objects and no
    reference cycles: the cyclic collector would only rescan them (as in ``load``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- the source ------------------------------------------------------------------------------


@dataclass
class ClickHouseSource:
    """One table, one time window: runs the queries and turns rows into runs and records."""

    url: ClickHouseURL
    since: datetime
    until: datetime | None
    service: str | None
    database: Database
    pricer: Pricer
    explain: TextIO | None = None
    queries: list[str] = field(default_factory=list)
    """Every SQL statement sent, in order (what ``--explain`` prints)."""
    _bounds: dict[str, tuple[int, int]] = field(default_factory=dict)
    _checked: bool = False
    _stamps: dict[int, str] = field(default_factory=dict)
    _issue: LoadIssue = field(default_factory=lambda: LoadIssue(Path("clickhouse")))

    def run_sql(self, sql: str) -> Sequence[Sequence[Any]]:
        if self.url.max_execution_time:
            sql = f"{sql}\nSETTINGS max_execution_time = {self.url.max_execution_time}"
        self.queries.append(sql)
        if self.explain is not None:
            self.explain.write(f"-- steptrace: SQL sent to {self.url.display()}\n{sql};\n\n")
            self.explain.flush()
        try:
            return self.database.query(sql)
        except ClickHouseError:
            raise
        except Exception as exc:  # the engine's own errors (chdb raises RuntimeError subclasses)
            raise translate_error(exc, self.url) from None

    def check_schema(self) -> None:
        """A missing table or a table without the exporter's columns is a clear error, not a failed query."""
        if self._checked:
            return
        rows = self.run_sql(_render(_COLUMNS_SQL, database=self.url.database, table=self.url.table))
        if not rows:
            raise missing_table(self.url)
        types = {str(name): str(kind) for name, kind in rows}
        missing = [
            f"{column} {kinds[0]}"
            for column, kinds in REQUIRED_COLUMNS.items()
            if not any(types.get(column, "").startswith(kind) for kind in kinds)
        ]
        if missing:
            raise ClickHouseError(
                f"{self.url.display()}: {self.url.qualified_table} is not the Collector clickhouse "
                f"exporter's traces table: it lacks {', '.join(missing)}"
            )
        self._checked = True

    def _window(self, lower: datetime, upper: datetime | None) -> str:
        clauses = [_render("Timestamp >= $lower", lower=lower)]
        if upper is not None:
            clauses.append(_render("Timestamp < $upper", upper=upper))
        if self.service is not None:
            clauses.append(_render("ServiceName = $service", service=self.service))
        return "\n      AND ".join(clauses)

    def runs_sql(self, run_id: str | None = None, *, aggregates_only: bool = False) -> str:
        """The per-run aggregate query of the window (or of one run id in it)."""
        upper = self.until + RUN_MARGIN if self.until is not None else None
        where = self._window(self.since - RUN_MARGIN, upper)
        # The key bloom filter skips granules of other applications' spans in a shared table.
        where += "\n      AND mapContains(SpanAttributes, 'steptrace.run_id')"
        if run_id is not None:
            where += _render("\n      AND SpanAttributes['steptrace.run_id'] = $run_id", run_id=run_id)
        having = [_render("started_ns >= $since", since=_ns(self.since))]
        if self.until is not None:
            having.append(_render("started_ns < $until", until=_ns(self.until)))
        spans = string.Template(_SPANS_OF_WINDOW).substitute(table=self.url.qualified_table, where=where)
        keys = "(" + ", ".join(literal(key) for key in sorted(_RUN_RECORD_KEYS)) + ")"
        aggregates = string.Template(_RUN_AGGREGATES_SQL).substitute(
            spans=spans, having=" AND ".join(having), run_record_keys=keys
        )
        if aggregates_only:
            return aggregates
        return string.Template(_RUNS_SQL).substitute(aggregates=aggregates, columns=_RUN_COLUMNS)

    def metrics_sql(self) -> str:
        """Each run of the window with its Run fields (release, stop reason, duration, ...)."""
        return string.Template(_RUN_METRICS_SQL).substitute(
            aggregates=self.runs_sql(aggregates_only=True).replace("\n", "\n    "),
            version_key=literal(A.GEN_AI_AGENT_VERSION),
            agent_key=literal(A.GEN_AI_AGENT_NAME),
            conversation_key=literal(A.GEN_AI_CONVERSATION_ID),
            stop_key=literal(A.STOP_REASON),
            rerun_key=literal(A.RERUN_OF),
            errors_key=literal(A.RUN_ERRORS),
            incomplete=literal(STOP_INCOMPLETE),
        )

    def load_runs(self, run_id: str | None = None) -> list[Run]:
        self.check_schema()
        with _no_cyclic_gc():
            runs = [self._run(row) for row in self.run_sql(self.runs_sql(run_id))]

        def fill() -> None:
            self.fill_tool_durations(runs, run_id)

        for run in runs:
            run.__dict__["_fill_durations"] = fill
        return runs

    def _run(self, row: Sequence[Any]) -> Run:
        (
            run_id, record_count, first_start_ns, last_end_ns, run_spans, run_span, agent_steps,
            llm_calls, tool_calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
            errors, repeated_calls, tools, llm_calls_by_end, step_agent, has_step_agent,
            step_release, has_step_release, step_agents,
        ) = row  # fmt: skip
        run_id = str(run_id)
        acc = _Accumulator()
        if int(run_spans):
            # The run record goes through the JSONL pass's own code: whatever it reads of a run
            # record (stop reason, agent, errors counted by the core, ...) is read the same way.
            start_ns, duration, status, attributes, service = run_span
            attributes = {**attributes, A.RUN_ID: run_id}
            row = ("agent_run", "", "", "", start_ns, duration, status, "", attributes, service)
            record = record_from_row(row)
            if record is not None:
                _accumulate([cast(StepFields, _DictFields(record))], {run_id: acc}, self._issue)
        # The rest are the query's aggregates, in the accumulator's own terms.
        acc.record_count = int(record_count)
        acc.first_started = iso_utc(int(first_start_ns))
        acc.last_end = int(last_end_ns) / 1e9
        acc.steps, acc.llm_calls, acc.tool_calls = int(agent_steps), int(llm_calls), int(tool_calls)
        acc.input_tokens, acc.output_tokens = int(input_tokens), int(output_tokens)
        for name, value in (("cache_read", cache_read_tokens), ("cache_write", cache_write_tokens)):
            if hasattr(acc, name):
                setattr(acc, name, int(value))
        acc.errors = [(str(span_id), str(parent) or None) for span_id, parent in errors]
        acc.repeated = int(repeated_calls)
        acc.agent = str(step_agent) if has_step_agent else None
        acc.agents = {str(name): None for name in step_agents}
        acc.release = str(step_release) if has_step_release else None
        acc.tools = {str(tool): int(count) for tool, count in tools}
        acc.tool_durations = {}  # read on first use: ClickHouseRun.tool_durations_ms
        acc.cost, acc.priced, acc.unpriced = self._cost(llm_calls_by_end)
        acc.no_usage = _calls_without_usage(llm_calls_by_end)
        run = _finish(run_id, acc, self.read_run, self.pricer)
        run.__class__ = ClickHouseRun  # the same fields; tool durations come on first read
        self._bounds[run.run_id] = (int(first_start_ns), int(last_end_ns))
        return run

    def _cost(self, llm_calls: Sequence[Sequence[Any]]) -> tuple[float, int, int]:
        """(USD, priced calls, unpriced calls) of a run's model calls, given in end order."""
        price, stamps = self.pricer.price, self._stamps
        cost, priced, unpriced = 0.0, 0, 0
        for minute, provider, model, inputs, outputs, read, written, reasoning, served, _failed in llm_calls:
            if served:  # a rerun served it from its recording: nothing was paid
                priced += 1
                continue
            # The same call, in the same order, as the JSONL pass prices it. Prices change by
            # date, read to the minute: one ISO stamp per minute, not one per call.
            stamp = stamps.get(minute)
            if stamp is None:
                stamp = stamps[minute] = iso_utc(minute * 60_000_000_000)
            call = price(provider, model, inputs, outputs, read, written, reasoning, stamp)
            if call is None:
                unpriced += 1
            else:
                cost += call
                priced += 1
        return cost, priced, unpriced

    def releases_sql(self, predicates: Sequence[str] = ()) -> str:
        """Per release, what ``diff`` compares: one GROUP BY run_id, then one GROUP BY release."""
        return string.Template(_RELEASES_SQL).substitute(
            metrics=self.metrics_sql(),
            predicates="".join(f"\n  AND {predicate}" for predicate in predicates),
            p50=_percentile_sql("durations", 50),
            p95=_percentile_sql("durations", 95),
            tool_p95=_percentile_sql(
                "arraySort(arrayMap(c -> c.2 / 1e6, arrayFilter(c -> c.1 = tool, calls)))", 95
            ),
        )

    def page_sql(self, predicates: Sequence[str], order: str, limit: int | None) -> str:
        return string.Template(_RUNS_PAGE_SQL).substitute(
            columns=_RUN_COLUMNS,
            metrics=self.metrics_sql(),
            predicates="\n  AND ".join(predicates) or "1",
            order=order,
            limit=f"\nLIMIT {limit}" if limit is not None else "",
        )

    def load_page(self, predicates: Sequence[str], order: str, limit: int | None) -> tuple[list[Run], int]:
        """(the runs of one page, in order; how many runs match the predicates)."""
        self.check_schema()
        with _no_cyclic_gc():
            rows = self.run_sql(self.page_sql(predicates, order, limit))
            runs = [self._run(row[:-1]) for row in rows]

        def fill() -> None:
            self.fill_tool_durations(runs)

        for run in runs:
            run.__dict__["_fill_durations"] = fill
        return runs, int(rows[0][-1]) if rows else 0

    @_no_cyclic_gc()
    def release_stats(self, predicates: Sequence[str] = ()) -> dict[str, SideStats]:
        """:class:`SideStats` of every release's runs in the window, from one query."""
        self.check_schema()
        out: dict[str, SideStats] = {}
        for row in self.run_sql(self.releases_sql(predicates)):
            (
                release, runs, failed_runs, stopped_failed_runs, tokens, repeated_runs, _durations, p50,
                p95, stops, _calls, tool_p95, priced_runs,
            ) = row  # fmt: skip
            runs = int(runs)
            costs = []
            blind_runs, blind_tokens, blind_calls = 0, 0, 0  # a call without usage: tokens unknown
            for _started, _run_id, llm_calls in priced_runs:  # in run order, as the runs list
                cost, priced, _ = self._cost(llm_calls)
                if priced:
                    costs.append(cost)
                if without := _calls_without_usage(llm_calls):
                    blind_runs, blind_calls = blind_runs + 1, blind_calls + without
                    blind_tokens += sum(int(c[3] or 0) + int(c[4] or 0) for c in llm_calls)
            reasons, counts = stops
            out[str(release)] = SideStats(
                runs=runs,
                with_errors_rate=int(failed_runs) / runs,
                failed_rate=int(stopped_failed_runs) / runs,
                p50_duration_ms=float(p50),
                p95_duration_ms=float(p95),
                tokens_per_run=(int(tokens) - blind_tokens) / (runs - blind_runs)
                if runs > blind_runs
                else None,
                runs_without_usage=blind_runs,
                llm_calls_without_usage=blind_calls,
                cost_per_run=sum(costs) / len(costs) if costs else None,
                repeated_call_rate=int(repeated_runs) / runs,
                tool_p95_ms={str(tool): float(value) for tool, value in tool_p95},
                stop_reason_shares={
                    str(reason): int(count) / runs for reason, count in zip(reasons, counts, strict=True)
                },
            )
        return out

    def tool_durations_sql(self, run_id: str | None = None) -> str:
        """Each run's tool call durations (ms), per tool in end order: the tool spans alone."""
        upper = self.until + RUN_MARGIN if self.until is not None else None
        where = self._window(self.since - RUN_MARGIN, upper)
        where += "\n      AND SpanName = 'tool_execution'"
        if run_id is not None:
            where += _render("\n      AND SpanAttributes['steptrace.run_id'] = $run_id", run_id=run_id)
        else:
            where += "\n      AND mapContains(SpanAttributes, 'steptrace.run_id')"
        return string.Template(_TOOL_DURATIONS_SQL).substitute(table=self.url.qualified_table, where=where)

    @_no_cyclic_gc()
    def fill_tool_durations(self, runs: Sequence[Run], run_id: str | None = None) -> None:
        """Set ``tool_durations_ms`` of ``runs`` (all of the window, or the one ``run_id``)."""
        self.check_schema()
        by_id = {run.run_id: run for run in runs}
        found: dict[str, dict[str, list[float]]] = {}
        for row_run_id, calls in self.run_sql(self.tool_durations_sql(run_id)):
            durations: dict[str, list[float]] = {}
            for tool, duration in calls:
                durations.setdefault(str(tool), []).append(int(duration) / 1e6)
            found[str(row_run_id)] = durations
        for key, run in by_id.items():
            run.__dict__["tool_durations_ms"] = found.get(key, {})
            run.__dict__["_fill_durations"] = None

    def run_spans_sql(self, run_id: str) -> str:
        bounds = self._bounds.get(run_id)
        upper: datetime | None
        if bounds is not None:
            # The run's own time range: the partitions (days) it touched, nothing else.
            lower, upper = _from_ns(bounds[0]), _from_ns(bounds[1] + 1000)
        else:
            lower = self.since - RUN_MARGIN
            upper = self.until + RUN_MARGIN if self.until is not None else None
        where = self._window(lower, upper)
        where += _render("\n      AND SpanAttributes['steptrace.run_id'] = $run_id", run_id=run_id)
        return string.Template(_RUN_SPANS_SQL).substitute(table=self.url.qualified_table, where=where)

    def read_run(self, run_id: str) -> list[Record]:
        """The step records of one run: only its spans are fetched."""
        self.check_schema()
        records = (record_from_row(row) for row in self.run_sql(self.run_spans_sql(run_id)))
        return [record for record in records if record is not None]

    def scan_sql(self, run_ids: set[str]) -> str:
        """The spans a many-run report reads: those of ``run_ids`` and every failed tool call."""
        upper = self.until + RUN_MARGIN if self.until is not None else None
        where = self._window(self.since - RUN_MARGIN, upper)
        wanted = ", ".join(literal(run_id) for run_id in sorted(run_ids)) or "''"
        where += (
            f"\n      AND (SpanAttributes['steptrace.run_id'] IN ({wanted})"
            "\n           OR (SpanName = 'tool_execution' AND StatusCode IN ('Error', 'STATUS_CODE_ERROR')"
            "\n               AND SpanAttributes['steptrace.run_id'] != ''))"
        )
        # In end order: the order the JSONL exporter wrote them.
        sql = string.Template(_RUN_SPANS_SQL).substitute(table=self.url.qualified_table, where=where)
        return sql.replace("ORDER BY Timestamp, SpanId", "ORDER BY start_ns + Duration, SpanId")

    def scan_records(self, run_ids: set[str]) -> Iterator[Record]:
        self.check_schema()
        for row in self.run_sql(self.scan_sql(run_ids)):
            record = record_from_row(row)
            if record is not None:
                yield record

    def describe(self) -> str:
        window = f"runs started from {self.since.isoformat()}"
        if self.until is not None:
            window += f" until {self.until.isoformat()}"
        service = f", service {self.service}" if self.service else ""
        return f"{self.url.display()} ({window}{service})"


class ClickHouseRun(Run):
    """A :class:`Run` of the ClickHouse source: each tool call's duration is fetched when
    ``tool_durations_ms`` is first read (one query for every run of the set, tool spans only),
    so listing runs never moves them; ``diff`` and the report read them."""

    @property
    def tool_durations_ms(self) -> dict[str, list[float]]:
        fill = self.__dict__.get("_fill_durations")
        if fill is not None:
            fill()
        return cast("dict[str, list[float]]", self.__dict__["tool_durations_ms"])

    @tool_durations_ms.setter
    def tool_durations_ms(self, value: dict[str, list[float]]) -> None:
        self.__dict__["tool_durations_ms"] = value


def _calls_without_usage(llm_calls: Sequence[Sequence[Any]]) -> int:
    """Model calls that answered without reporting usage (tokens unknown, never 0), as the
    JSONL pass counts them: no input and no output count, and not failed."""
    return sum(1 for call in llm_calls if call[3] is None and call[4] is None and not call[9])


def _ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc) + timedelta(
        microseconds=(ns % 1_000_000_000) // 1000
    )


class ClickHouseRunSet(RunSet):
    """A :class:`RunSet` whose runs are the aggregate rows of one query, run on first use.

    Looking up one run id first asks for that run alone, so ``debug``/``replay``/``view`` never
    aggregate the whole window; ``runs()`` with filters or a limit reads the matching page
    alone; ``side_stats`` (``diff``) reads one row per release; anything else (a run id prefix,
    the percentile filter, cursors) reads every run of the window once.
    """

    def __init__(self, source: ClickHouseSource, *, window_note: str | None = None) -> None:
        self.source = source
        self.window_note = window_note
        """Set when the default window applied: what was read, and how to read more."""
        self._lazy_ready = False
        self._lazy_runs: list[Run] | None = None
        self._lazy_by_id: dict[str, Run] = {}
        self._release_stats: dict[tuple[str, ...], dict[str, SideStats]] = {}
        super().__init__([], [], [])
        self._lazy_ready = True

    def _load_all(self) -> None:
        if self._lazy_runs is None and self._lazy_ready:
            runs = self.source.load_runs()
            runs.sort(key=lambda r: (r.started_at, r.run_id))
            self._lazy_runs = runs
            self._lazy_by_id = {run.run_id: run for run in runs}

    # RunSet's methods read these two; here they fill on first read.
    @property
    def _runs(self) -> list[Run]:
        self._load_all()
        return self._lazy_runs if self._lazy_runs is not None else []

    @_runs.setter
    def _runs(self, value: list[Run]) -> None:
        pass  # RunSet.__init__'s empty list: the query fills it

    @property
    def _by_id(self) -> dict[str, Run]:
        self._load_all()
        return self._lazy_by_id

    @_by_id.setter
    def _by_id(self, value: dict[str, Run]) -> None:
        pass

    def get(self, run_id: str) -> Run | None:
        if self._lazy_runs is None and run_id:
            found = self._lazy_by_id.get(run_id)
            if found is None:
                runs = self.source.load_runs(run_id)
                found = runs[0] if runs else None
            if found is not None:
                self._lazy_by_id[run_id] = found
                return found
        return super().get(run_id)  # a prefix: every run of the window

    def describe_sources(self) -> str:
        return self.source.describe()

    def runs(self, **filters: Any) -> list[Run]:
        """As :meth:`RunSet.runs`; filters SQL can apply exactly run in the database, with
        the order and ``limit`` (only the matching runs are read), the others on the runs."""
        plan = None if self._lazy_runs is not None else _sql_plan(filters)
        if (
            plan is None
            or filters.get("before") is not None
            or (not plan[0] and filters.get("limit") is None)
        ):
            return super().runs(**filters)  # every run of the window: the one aggregate, kept
        predicates, order, _ = plan
        return self.source.load_page(predicates, order, filters.get("limit"))[0]

    def runs_page(
        self, limit: int | None, *, from_end: bool = False, **filters: Any
    ) -> tuple[list[Run], int]:
        plan = None if self._lazy_runs is not None else _sql_plan(filters)
        if plan is None or (limit is None and not plan[0]):
            # Every run of the window, in full: the one aggregate query (kept for later use).
            return super().runs_page(limit, from_end=from_end, **filters)
        predicates, order, reversed_order = plan
        page, matched = self.source.load_page(predicates, reversed_order if from_end else order, limit)
        return (page[::-1] if from_end else page), matched

    def side_stats(self, **filters: Any) -> SideStats:
        """In SQL (one query gives every release, for the same other filters) when the filters
        name a release and the rest are ones SQL applies exactly (as for :meth:`runs`);
        otherwise, and once the runs are loaded, from the runs."""
        release = filters.pop("release", None)
        plan = None
        if self._lazy_runs is None and type(release) is str and filters.get("limit") is None:
            plan = _sql_plan(filters)
        if plan is None:
            return super().side_stats(**filters, release=release)
        predicates = tuple(plan[0])
        stats = self._release_stats.get(predicates)
        if stats is None:
            stats = self._release_stats[predicates] = self.source.release_stats(predicates)
        return stats.get(release, SideStats(0, None, None, None, None, None, None, {}, {}))

    def scan_records(self, wanted: set[str]) -> Iterator[Record]:
        return self.source.scan_records(wanted)


def _sql_plan(filters: Mapping[str, Any]) -> tuple[list[str], str, str] | None:
    """(predicates, ORDER BY, the ORDER BY turned around) that select and order the runs as
    :func:`filter_runs` does, or None when a filter is not one SQL applies exactly (the
    percentile filter, cursors, values of the wrong type): filter_runs stays the definition."""
    known = {
        "stop_reason", "min_steps", "max_steps", "tool", "release", "since", "until", "agent",
        "conversation", "status", "min_duration", "max_duration", "order_by", "ascending", "limit",
        "reruns", "has_errors", "starting_agent",
    }  # fmt: skip
    given = {name: value for name, value in filters.items() if value is not None}
    if not set(given) <= known or given.get("status") not in (None, "ok", "error"):
        return None
    if given.get("order_by", "started") not in ("started", "duration"):
        return None
    limit = given.get("limit")
    if limit is not None and (type(limit) is not int or limit < 0):
        return None
    where: list[str] = [] if given.get("reruns") else ["NOT is_rerun"]  # reruns only when asked
    for name, column in (
        ("stop_reason", "stop_reason"), ("release", "release"), ("conversation", "conversation_id"),
        ("status", "status"),
    ):  # fmt: skip
        if name in given:
            if type(given[name]) is not str:
                return None
            where.append(f"{column} = {literal(given[name])}")
    if "has_errors" in given:  # a run with errors: any error counted, or a failed run
        if type(given["has_errors"]) is not bool:
            return None
        where.append(("" if given["has_errors"] else "NOT ") + "(failed OR ifNull(status = 'error', 0))")
    for name, op in (("min_steps", ">="), ("max_steps", "<=")):
        if name in given:
            if type(given[name]) is not int:
                return None
            where.append(f"total_steps {op} {given[name]}")
    if "tool" in given:
        if type(given["tool"]) is not str:
            return None
        where.append(f"has(arrayMap(x -> x.1, tools), {literal(given['tool'])})")
    try:
        for name, op in (("since", ">="), ("until", "<")):
            if name in given:
                where.append(f"started_us {op} {_ns(parse_time(given[name])) // 1000}")
        for name, op in (("min_duration", ">="), ("max_duration", "<=")):
            if name in given:
                # repr: the shortest text that reads back as the same float.
                where.append(f"duration_ms {op} {parse_duration_ms(given[name], name)!r}")
    except (TypeError, ValueError, OverflowError):
        return None  # filter_runs says what is wrong with the value
    for name in ("agent", "starting_agent"):
        if name in given:
            agents = [given[name]] if isinstance(given[name], str) else list(given[name])
            if not all(type(agent) is str for agent in agents):
                return None
            names = ", ".join(literal(a) for a in agents)
            if not agents:
                where.append("0")
            elif name == "agent":  # any agent that acted: the starting one or one handed to
                where.append(f"(agent IN ({names}) OR hasAny(step_agents, [{names}]))")
            else:
                where.append(f"agent IN ({names})")
    ascending = given.get("ascending")
    if given.get("order_by", "started") == "duration":
        order, back = ("duration_ms, run_id", "duration_ms DESC, run_id DESC")
        if not ascending:
            order, back = ("duration_ms DESC, run_id", "duration_ms, run_id DESC")
    else:
        order, back = ("started_us, run_id", "started_us DESC, run_id DESC")
        if ascending is False:
            order, back = back, order
    return where, order, back


def load_clickhouse(
    url: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    service: str | None = None,
    explain: TextIO | None = None,
    prices: PricesSource | Pricer | None = None,
) -> ClickHouseRunSet:
    """Runs from the Collector's ``otel_traces`` table, with the same :class:`RunSet` API as
    :func:`load`. ``since`` defaults to 24 hours ago (``window_note`` then says so); ``until``
    is exclusive; ``service`` keeps the spans of one ``service.name``. The password comes from
    ``$STEPTRACE_CLICKHOUSE_PASSWORD``. ``explain`` gets every SQL statement before it runs;
    ``prices`` as for :func:`load`.

    >>> runs = load_clickhouse("clickhouse://reader@ch.internal:8123/otel?table=otel_traces",
    ...                        since="2026-11-20")  # doctest: +SKIP
    >>> runs.runs(release="1.5.0", stop_reason="max_steps")  # doctest: +SKIP
    """
    parsed = ClickHouseURL.parse(url)
    note = None
    if since is None:
        since_at = datetime.now(timezone.utc) - DEFAULT_WINDOW
        note = (
            f"reading runs started in the last 24 h (since {since_at.strftime('%Y-%m-%dT%H:%MZ')}) "
            "from ClickHouse; pass --since to look further back"
        )
    else:
        since_at = parse_time(since)
    until_at = parse_time(until) if until is not None else None
    pricer = prices if isinstance(prices, Pricer) else Pricer(prices)
    source = ClickHouseSource(parsed, since_at, until_at, service, _connect(parsed), pricer, explain)
    return ClickHouseRunSet(source, window_note=note)
