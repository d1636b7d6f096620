"""The Collector's ``otel_traces`` table in chdb (ClickHouse in-process), filled the way the
``clickhouse`` exporter fills it. The one place the tests and the bench make that table.

``TRACES_DDL`` is the exporter's default traces schema (exporter/clickhouseexporter,
``internal/sql_templates/traces_table.sql``: MergeTree, ``PARTITION BY toDate(Timestamp)``,
``ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))``) with its placeholders filled the
way the exporter fills them by default (no cluster, no TTL). ``exporter_row`` converts a span as
the exporter does: hex ids, the start time as ``Timestamp``, ``Duration`` in nanoseconds, status
and kind as words, and every attribute as text (pcommon ``Value.AsString``).
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec
from clickhouse_connect.driver.binding import bind_query

TRACES_DDL = """CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity=8192, ttl_only_drop_parts = 1"""

_STATUS_WORDS = {"ok": "Ok", "error": "Error", "unset": "Unset"}
_KIND_WORDS = {0: "Internal", 1: "Server", 2: "Client", 3: "Producer", 4: "Consumer"}


def as_string(value: Any) -> str:
    """An attribute value as the exporter stores it (pcommon ``Value.AsString``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Go's strconv.FormatFloat(v, 'f', -1, 64): shortest round trip, never an exponent.
        text = format(Decimal(repr(value)), "f")
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def _stamp(ns: int) -> str:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return f"{seconds}.{nanos:09d}"


def exporter_row(
    *,
    name: str,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    start_ns: int,
    end_ns: int,
    status: str,
    status_message: str | None,
    attributes: Mapping[str, Any],
    resource: Mapping[str, Any],
    scope: tuple[str, str] = ("steptrace", ""),
    kind: int = 0,
    events: Sequence[tuple[int, str, Mapping[str, Any]]] = (),
) -> dict[str, Any]:
    """One ``otel_traces`` row (a JSONEachRow object) for one span, as the exporter writes it."""
    service = resource.get("service.name")
    return {
        "Timestamp": _stamp(start_ns),
        "TraceId": f"{trace_id:032x}",
        "SpanId": f"{span_id:016x}",
        "ParentSpanId": f"{parent_span_id:016x}" if parent_span_id else "",
        "TraceState": "",
        "SpanName": name,
        "SpanKind": _KIND_WORDS.get(kind, "Unspecified"),
        "ServiceName": service if isinstance(service, str) else "",
        "ResourceAttributes": {k: as_string(v) for k, v in resource.items()},
        "ScopeName": scope[0],
        "ScopeVersion": scope[1],
        "SpanAttributes": {k: as_string(v) for k, v in attributes.items()},
        "Duration": end_ns - start_ns,
        "StatusCode": _STATUS_WORDS[status],
        "StatusMessage": status_message or "",
        "Events.Timestamp": [_stamp(t) for t, _, _ in events],
        "Events.Name": [n for _, n, _ in events],
        "Events.Attributes": [{k: as_string(v) for k, v in a.items()} for _, _, a in events],
        "Links.TraceId": [],
        "Links.SpanId": [],
        "Links.TraceState": [],
        "Links.Attributes": [],
    }


def rows_from_spans(spans: Iterable[Any], service: str = "weather-svc") -> list[dict[str, Any]]:
    """Rows for ``analysis_logs.Span`` values (the generated fleets)."""
    resource = {"service.name": service, "telemetry.sdk.language": "python"}
    return [
        exporter_row(
            name=s.name,
            trace_id=s.trace_id,
            span_id=s.span_id,
            parent_span_id=s.parent_span_id,
            start_ns=s.start_ns,
            end_ns=s.end_ns,
            status=s.status,
            status_message=s.description,
            attributes=s.attributes,
            resource=resource,
        )
        for s in spans
    ]


def rows_from_readable_spans(spans: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows for OpenTelemetry SDK ``ReadableSpan`` objects (a real steptrace run)."""
    rows = []
    for span in spans:
        code = span.status.status_code.name.lower()
        scope = span.instrumentation_scope
        rows.append(
            exporter_row(
                name=span.name,
                trace_id=span.context.trace_id,
                span_id=span.context.span_id,
                parent_span_id=span.parent.span_id if span.parent is not None else None,
                start_ns=span.start_time,
                end_ns=span.end_time,
                status=code,
                status_message=span.status.description,
                attributes=dict(span.attributes or {}),
                resource=dict(span.resource.attributes),
                scope=(scope.name, scope.version or "") if scope is not None else ("", ""),
                kind=span.kind.value,
                events=[(e.timestamp, e.name, dict(e.attributes or {})) for e in span.events],
            )
        )
    return rows


class ChdbDatabase:
    """steptrace's ``Database`` interface over one chdb session (the engine, in this process).

    The parameters go the way clickhouse-connect sends them over HTTP: its own binding turns
    each into the ``param_NAME`` text the server parses (and chdb takes that text as is)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.queries: list[str] = []
        self.parameters: list[dict[str, str]] = []
        """What each query sent as ``param_NAME`` values (name without the prefix)."""

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[list[Any]]:
        self.queries.append(sql)
        wire: dict[str, str] = {}
        if parameters:
            sql, bound = bind_query(sql, dict(parameters))
            assert isinstance(sql, str)
            wire = {name.removeprefix("param_"): value for name, value in bound.items()}
        self.parameters.append(wire)
        text = sql.rstrip().rstrip(";")
        marker = "\nSETTINGS "
        if marker in text:
            text += ", output_format_json_quote_64bit_integers = 0"
        else:
            text += "\nSETTINGS output_format_json_quote_64bit_integers = 0"
        result = self.session.query(text, "JSONCompact", params=wire or None)
        data = result.data()
        # msgspec (a steptrace dependency): the result of a fleet's aggregate is large JSON.
        if not data:
            return []
        try:
            return msgspec.json.decode(data)["data"]  # type: ignore[no-any-return]
        except msgspec.DecodeError:
            # After a query stopped by max_execution_time, chdb puts that query's partial
            # output before the next result: the answer is the last document.
            decoder, position, document = json.JSONDecoder(), 0, None
            while position < len(data.rstrip()):
                document, position = decoder.raw_decode(data, position)
                while position < len(data) and data[position].isspace():
                    position += 1
            return document["data"] if isinstance(document, dict) else []

    def execute(self, sql: str) -> None:
        self.session.query(sql)

    def close(self) -> None:
        pass


class ChdbHttpServer:
    """A chdb session behind ClickHouse's HTTP interface, as far as clickhouse-connect uses it:
    the statement in the body (or ``query=``), each bound value as a ``param_NAME`` of the URL,
    the answer in the format the statement asks for (Native, or TabSeparated). So the real
    client, its binding and its decoding (named tuples as dicts) run against the real engine.

    >>> with ChdbHttpServer(session) as server:  # doctest: +SKIP
    ...     url = f"clickhouse://reader@127.0.0.1:{server.port}/otel?table=otel_traces"
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        self.requests: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                arguments = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                sql = arguments.pop("query", "") + self.rfile.read(length).decode()
                parameters = {
                    k.removeprefix("param_"): v for k, v in arguments.items() if k.startswith("param_")
                }
                owner.requests.append((sql, parameters))
                text = sql.rstrip().rstrip(";")
                fmt = "TabSeparated"
                if re.search(r"\sFORMAT\s+Native$", text):
                    text, fmt = re.sub(r"\sFORMAT\s+Native$", "", text), "Native"
                code = ""
                try:
                    body = owner.session.query(text, fmt, params=parameters or None).bytes()
                    status = 200
                except Exception as exc:  # as the server does: the text, and the code in a header
                    body, status = str(exc).encode(), 500
                    found = re.search(r"Code: (\d+)", str(exc))
                    code = found.group(1) if found else "1"
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("X-ClickHouse-Format", fmt)
                self.send_header("X-ClickHouse-Timezone", "UTC")
                if code:
                    self.send_header("X-ClickHouse-Exception-Code", code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        # One request at a time: a chdb session is not shared between threads.
        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChdbHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def create_table(database: ChdbDatabase, name: str = "otel.otel_traces") -> None:
    schema = name.split(".", maxsplit=1)[0]
    database.execute(f"CREATE DATABASE IF NOT EXISTS {schema}")
    database.execute(TRACES_DDL.format(table=name))


def insert_rows(
    database: ChdbDatabase, rows: Sequence[Mapping[str, Any]], name: str = "otel.otel_traces"
) -> None:
    """Insert in batches, as the exporter does (one INSERT per batch)."""
    for start in range(0, len(rows), 20_000):
        body = "\n".join(json.dumps(row) for row in rows[start : start + 20_000])
        database.execute(f"INSERT INTO {name} FORMAT JSONEachRow\n{body}")
