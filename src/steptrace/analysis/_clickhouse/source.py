"""One table and one window as a :class:`RunSet`: runs the queries of the command modules
(``runs``, ``diff``, ``debug``, ``report``) through the :class:`Database` seam and turns their
rows into runs and records (``decoding``)."""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO, cast

from steptrace._pricing import Pricer, PricesSource
from steptrace.analysis._clickhouse import debug, diff, report, runs
from steptrace.analysis._clickhouse.connection import (
    ClickHouseError,
    ClickHouseURL,
    Database,
    connect,
    missing_table,
    translate_error,
)
from steptrace.analysis._clickhouse.decoding import RunDecoder, calls_without_usage, fields, record_from_row
from steptrace.analysis._clickhouse.sql import (
    COLUMNS_SQL,
    REQUIRED_COLUMNS,
    Query,
    Window,
    from_epoch_ns,
)
from steptrace.analysis._diff import SideStats
from steptrace.analysis._runs import Record, Run, RunSet, parse_time

DEFAULT_WINDOW = timedelta(hours=24)
"""How far back a query looks when no ``since`` is given: keeps a first command on a big table cheap."""


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
    queries: list[Query] = field(default_factory=list)
    """Every statement sent, in order (what ``--explain`` prints)."""
    _bounds: dict[str, tuple[int, int]] = field(default_factory=dict)
    _checked: bool = False

    def __post_init__(self) -> None:
        self.window = Window(self.since, self.until, self.service)
        self.decoder = RunDecoder(self.pricer, self.read_run)

    @property
    def table(self) -> str:
        return self.url.qualified_table

    def run_sql(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Sequence[Sequence[Any]]:
        """The rows of one statement; ``parameters`` bind its ``{name:Type}`` placeholders."""
        if self.url.max_execution_time:
            sql = f"{sql}\nSETTINGS max_execution_time = {self.url.max_execution_time}"
        parameters = dict(parameters or {})
        self.queries.append(Query(sql, parameters))
        if self.explain is not None:
            # JSON: every value on one line, control characters escaped.
            bound = "".join(f"-- {{{name}}} = {json.dumps(value)}\n" for name, value in parameters.items())
            self.explain.write(f"-- steptrace: SQL sent to {self.url.display()}\n{bound}{sql};\n\n")
            self.explain.flush()
        try:
            return self.database.query(sql, parameters)
        except ClickHouseError:
            raise
        except Exception as exc:  # the engine's own errors (chdb raises RuntimeError subclasses)
            raise translate_error(exc, self.url) from None

    def run(self, query: Query) -> Sequence[Sequence[Any]]:
        return self.run_sql(query.sql, query.parameters)

    def check_schema(self) -> None:
        """A missing table or a table without the exporter's columns is a clear error, not a failed query."""
        if self._checked:
            return
        rows = self.run_sql(COLUMNS_SQL, {"database": self.url.database, "table": self.url.table})
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

    def _runs_of(self, rows: Sequence[Sequence[Any]], run_id: str | None = None) -> list[Run]:
        out = []
        for row in rows:
            run = self.decoder.run(row)
            run.__class__ = ClickHouseRun  # the same fields; tool durations come on first read
            self._bounds[run.run_id] = (int(row[2]), int(row[3]))  # first start, last end
            out.append(run)

        def fill() -> None:
            self.fill_tool_durations(out, run_id)

        for run in out:
            run.__dict__["_fill_durations"] = fill
        return out

    def load_runs(self, run_id: str | None = None) -> list[Run]:
        """Every run of the window (or the one ``run_id``), in start order."""
        self.check_schema()
        with _no_cyclic_gc():
            return self._runs_of(self.run(runs.runs_query(self.table, self.window, run_id)), run_id)

    def load_page(self, run_filter: runs.RunFilter, order: str, limit: int | None) -> tuple[list[Run], int]:
        """(the runs of one page, in order; how many runs match the filter)."""
        self.check_schema()
        with _no_cyclic_gc():
            rows = self.run(runs.page_query(self.table, self.window, run_filter, order, limit))
            page = self._runs_of([row[:-1] for row in rows])
        return page, int(rows[0][-1]) if rows else 0

    @_no_cyclic_gc()
    def release_stats(self, run_filter: runs.RunFilter) -> dict[str, SideStats]:
        """:class:`SideStats` of every release's runs in the window, from one query."""
        self.check_schema()
        out: dict[str, SideStats] = {}
        for row in self.run(diff.releases_query(self.table, self.window, run_filter)):
            (
                release, count, failed_runs, stopped_failed_runs, tokens, repeated_runs, _durations,
                p50, p95, stops, _calls, tool_p95, priced_runs,
            ) = row  # fmt: skip
            count = int(count)
            costs = []
            blind_runs, blind_tokens, blind_calls = 0, 0, 0  # a call without usage: tokens unknown
            for priced_run in priced_runs:  # in run order, as the runs list
                llm_calls = fields(priced_run)[2]
                cost, priced, _ = self.decoder.cost(llm_calls)
                if priced:
                    costs.append(cost)
                if without := calls_without_usage(llm_calls):
                    blind_runs, blind_calls = blind_runs + 1, blind_calls + without
                    for call_fields in llm_calls:
                        call = fields(call_fields)
                        blind_tokens += int(call[3] or 0) + int(call[4] or 0)
            reasons, counts = fields(stops)
            out[str(release)] = SideStats(
                runs=count,
                with_errors_rate=int(failed_runs) / count,
                failed_rate=int(stopped_failed_runs) / count,
                p50_duration_ms=float(p50),
                p95_duration_ms=float(p95),
                tokens_per_run=(
                    (int(tokens) - blind_tokens) / (count - blind_runs) if count > blind_runs else None
                ),
                runs_without_usage=blind_runs,
                llm_calls_without_usage=blind_calls,
                cost_per_run=sum(costs) / len(costs) if costs else None,
                repeated_call_rate=int(repeated_runs) / count,
                tool_p95_ms={str(tool): float(value) for tool, value in map(fields, tool_p95)},
                stop_reason_shares={
                    str(reason): int(n) / count for reason, n in zip(reasons, counts, strict=True)
                },
            )
        return out

    @_no_cyclic_gc()
    def fill_tool_durations(self, listed: Sequence[Run], run_id: str | None = None) -> None:
        """Set ``tool_durations_ms`` of ``listed`` (all of the window, or the one ``run_id``)."""
        self.check_schema()
        found: dict[str, dict[str, list[float]]] = {}
        for row_run_id, calls in self.run(report.tool_durations_query(self.table, self.window, run_id)):
            durations: dict[str, list[float]] = {}
            for tool, duration in map(fields, calls):
                durations.setdefault(str(tool), []).append(int(duration) / 1e6)
            found[str(row_run_id)] = durations
        for run in listed:
            run.__dict__["tool_durations_ms"] = found.get(run.run_id, {})
            run.__dict__["_fill_durations"] = None

    def read_run(self, run_id: str) -> list[Record]:
        """The step records of one run: only its spans are fetched (within its own time range
        when it was listed: the partitions it touched, nothing else)."""
        self.check_schema()
        bounds = self._bounds.get(run_id)
        lower = upper = None
        if bounds is not None:
            lower, upper = from_epoch_ns(bounds[0]), from_epoch_ns(bounds[1] + 1000)
        query = debug.run_spans_query(self.table, self.window, run_id, lower, upper)
        records = (record_from_row(row) for row in self.run(query))
        return [record for record in records if record is not None]

    def scan_records(self, run_ids: set[str]) -> Iterator[Record]:
        self.check_schema()
        for row in self.run(report.scan_query(self.table, self.window, run_ids)):
            record = record_from_row(row)
            if record is not None:
                yield record

    def describe(self) -> str:
        window = f"runs started from {self.since.isoformat()}"
        if self.until is not None:
            window += f" until {self.until.isoformat()}"
        service = f", service {self.service!r}" if self.service else ""
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
        self._release_stats: dict[runs.RunFilter, dict[str, SideStats]] = {}
        super().__init__([], [], [])
        self._lazy_ready = True

    def _load_all(self) -> None:
        if self._lazy_runs is None and self._lazy_ready:
            loaded = self.source.load_runs()
            loaded.sort(key=lambda r: (r.started_at, r.run_id))
            self._lazy_runs = loaded
            self._lazy_by_id = {run.run_id: run for run in loaded}

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
                loaded = self.source.load_runs(run_id)
                found = loaded[0] if loaded else None
            if found is not None:
                self._lazy_by_id[run_id] = found
                return found
        return super().get(run_id)  # a prefix: every run of the window

    def describe_sources(self) -> str:
        return self.source.describe()

    def runs(self, **filters: Any) -> list[Run]:
        """As :meth:`RunSet.runs`; filters SQL can apply exactly run in the database, with
        the order and ``limit`` (only the matching runs are read), the others on the runs."""
        plan = None if self._lazy_runs is not None else runs.run_filter(filters)
        if (
            plan is None
            or filters.get("before") is not None
            or (not plan[0].predicates and filters.get("limit") is None)
        ):
            return super().runs(**filters)  # every run of the window: the one aggregate, kept
        run_filter, order, _ = plan
        return self.source.load_page(run_filter, order, filters.get("limit"))[0]

    def runs_page(
        self, limit: int | None, *, from_end: bool = False, **filters: Any
    ) -> tuple[list[Run], int]:
        plan = None if self._lazy_runs is not None else runs.run_filter(filters)
        if plan is None or (limit is None and not plan[0].predicates):
            # Every run of the window, in full: the one aggregate query (kept for later use).
            return super().runs_page(limit, from_end=from_end, **filters)
        run_filter, order, reversed_order = plan
        page, matched = self.source.load_page(run_filter, reversed_order if from_end else order, limit)
        return (page[::-1] if from_end else page), matched

    def side_stats(self, **filters: Any) -> SideStats:
        """In SQL (one query gives every release, for the same other filters) when the filters
        name a release and the rest are ones SQL applies exactly (as for :meth:`runs`);
        otherwise, and once the runs are loaded, from the runs."""
        release = filters.pop("release", None)
        plan = None
        if self._lazy_runs is None and type(release) is str and filters.get("limit") is None:
            plan = runs.run_filter(filters)
        if plan is None:
            return super().side_stats(**filters, release=release)
        run_filter = plan[0]
        stats = self._release_stats.get(run_filter)
        if stats is None:
            stats = self._release_stats[run_filter] = self.source.release_stats(run_filter)
        return stats.get(release, SideStats(0, None, None, None, None, None, None, {}, {}))

    def scan_records(self, wanted: set[str]) -> Iterator[Record]:
        return self.source.scan_records(wanted)


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
    source = ClickHouseSource(parsed, since_at, until_at, service, connect(parsed), pricer, explain)
    return ClickHouseRunSet(source, window_note=note)
