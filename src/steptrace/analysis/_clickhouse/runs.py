"""The SQL of ``runs`` (and of every command's run lookup): one row per run of the window, each
an aggregate of its spans (``GROUP BY run_id``); each run's ``Run`` fields on top; the filters
of ``runs`` as predicates, its order and its page (:func:`page_query`)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steptrace import _attributes as A
from steptrace.analysis._clickhouse.sql import (
    ONE_COPY_PER_SPAN,
    Query,
    Window,
    epoch_ns,
    indented,
    key,
    merged,
)
from steptrace.analysis._runs import STOP_INCOMPLETE, parse_duration_ms, parse_time

# The run span's attributes a run is made of (what _runs._accumulate reads of a run record:
# agent, release, conversation, stop reason, the errors the core counted): only these cross the
# wire with the per-run aggregates; debug/replay/view fetch a run's spans whole.
RUN_RECORD_KEYS = frozenset(
    {
        A.GEN_AI_AGENT_NAME,
        A.GEN_AI_AGENT_VERSION,
        A.GEN_AI_CONVERSATION_ID,
        A.STOP_REASON,
        A.RUN_ERRORS,
        A.RERUN_OF,
    }
)

# One row per span of the window (each span once), with the fields the aggregates read.
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
WHERE $where
$one_copy"""

RUN_COLUMNS = """    run_id,
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
"""The per-run row decoding.run_from_row reads, in its order."""

_RUNS_SQL = """SELECT
$columns
FROM (
$aggregates
)
ORDER BY first_start_ns, run_id"""

# One row per run of the window: what a run is made of, each an aggregate of its spans.
_RUN_AGGREGATES_SQL = """SELECT
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

# Each run's fields as Run has them (_runs._finish of the aggregates), for the predicates and
# orders of runs() and for diff: release, agent, stop reason, status, duration, steps, ...
_RUN_METRICS_SQL = """SELECT
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


def aggregates_query(table: str, window: Window, run_id: str | None = None) -> Query:
    """The per-run aggregates of the window's runs (or of the one ``run_id`` among them)."""
    where = window.spans_where()
    sql = where.sql
    # The key bloom filter skips granules of other applications' spans in a shared table.
    sql += "\n      AND mapContains(SpanAttributes, 'steptrace.run_id')"
    parameters: dict[str, Any] = {}
    if run_id is not None:
        sql += "\n      AND SpanAttributes['steptrace.run_id'] = {run_id:String}"
        parameters["run_id"] = run_id
    spans = string.Template(_SPANS_OF_WINDOW).substitute(table=table, where=sql, one_copy=ONE_COPY_PER_SPAN)
    having = window.runs_having()
    keys = "(" + ", ".join(key(name) for name in sorted(RUN_RECORD_KEYS)) + ")"
    text = string.Template(_RUN_AGGREGATES_SQL).substitute(
        spans=indented(spans), having=having.sql, run_record_keys=keys
    )
    return Query(text, merged(where.parameters, parameters, having.parameters))


def runs_query(table: str, window: Window, run_id: str | None = None) -> Query:
    """Every run of the window (or the one ``run_id``), a row each, in start order."""
    aggregates = aggregates_query(table, window, run_id)
    sql = string.Template(_RUNS_SQL).substitute(aggregates=indented(aggregates.sql), columns=RUN_COLUMNS)
    return Query(sql, aggregates.parameters)


def metrics_query(table: str, window: Window) -> Query:
    """Each run of the window with its Run fields (release, stop reason, duration, ...)."""
    aggregates = aggregates_query(table, window)
    sql = string.Template(_RUN_METRICS_SQL).substitute(
        aggregates=indented(aggregates.sql),
        version_key=key(A.GEN_AI_AGENT_VERSION),
        agent_key=key(A.GEN_AI_AGENT_NAME),
        conversation_key=key(A.GEN_AI_CONVERSATION_ID),
        stop_key=key(A.STOP_REASON),
        rerun_key=key(A.RERUN_OF),
        errors_key=key(A.RUN_ERRORS),
        incomplete=key(STOP_INCOMPLETE),
    )
    return Query(sql, aggregates.parameters)


@dataclass(frozen=True)
class RunFilter:
    """Filters of ``runs()`` as SQL predicates on the fields of :func:`metrics_query`, with the
    values they compare to as parameters (named ``filter_*``)."""

    predicates: tuple[str, ...] = ()
    values: tuple[tuple[str, Any], ...] = ()

    @property
    def parameters(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.values}


def page_query(table: str, window: Window, run_filter: RunFilter, order: str, limit: int | None) -> Query:
    """The runs ``run_filter`` selects, in ``order``, ``limit`` of them, and how many match."""
    metrics = metrics_query(table, window)
    sql = string.Template(_RUNS_PAGE_SQL).substitute(
        columns=RUN_COLUMNS,
        metrics=indented(metrics.sql),
        predicates="\n  AND ".join(run_filter.predicates) or "1",
        order=order,
        # A number, not a parameter: servers before 23.x take no parameter in LIMIT.
        limit=f"\nLIMIT {int(limit):d}" if limit is not None else "",
    )
    return Query(sql, merged(metrics.parameters, run_filter.parameters))


_FILTERS = {
    "stop_reason", "min_steps", "max_steps", "tool", "release", "since", "until", "agent",
    "conversation", "status", "min_duration", "max_duration", "order_by", "ascending", "limit",
    "reruns", "has_errors", "starting_agent",
}  # fmt: skip
_ORDERS = {
    # order_by, ascending -> (ORDER BY, the same turned around)
    ("duration", True): ("duration_ms, run_id", "duration_ms DESC, run_id DESC"),
    ("duration", False): ("duration_ms DESC, run_id", "duration_ms, run_id DESC"),
    ("started", True): ("started_us, run_id", "started_us DESC, run_id DESC"),
    ("started", False): ("started_us DESC, run_id DESC", "started_us, run_id"),
}


def run_filter(filters: Mapping[str, Any]) -> tuple[RunFilter, str, str] | None:
    """(predicates, ORDER BY, the ORDER BY turned around) that select and order the runs as
    :func:`filter_runs` does, or None when a filter is not one SQL applies exactly (the
    percentile filter, cursors, values of the wrong type): filter_runs stays the definition."""
    given = {name: value for name, value in filters.items() if value is not None}
    if not set(given) <= _FILTERS or given.get("status") not in (None, "ok", "error"):
        return None
    if given.get("order_by", "started") not in ("started", "duration"):
        return None
    limit = given.get("limit")
    if limit is not None and (type(limit) is not int or limit < 0):
        return None
    where: list[str] = [] if given.get("reruns") else ["NOT is_rerun"]  # reruns only when asked
    values: list[tuple[str, Any]] = []

    def compare(column: str, op: str, name: str, kind: str, value: Any) -> None:
        where.append(f"{column} {op} {{filter_{name}:{kind}}}")
        values.append((f"filter_{name}", value))

    for name, column in (
        ("stop_reason", "stop_reason"), ("release", "release"), ("conversation", "conversation_id"),
        ("status", "status"),
    ):  # fmt: skip
        if name in given:
            if type(given[name]) is not str:
                return None
            compare(column, "=", name, "String", given[name])
    for name, op in (("min_steps", ">="), ("max_steps", "<=")):
        if name in given:
            if type(given[name]) is not int:
                return None
            compare("total_steps", op, name, "Int64", given[name])
    if "tool" in given:
        if type(given["tool"]) is not str:
            return None
        where.append("has(arrayMap(x -> x.1, tools), {filter_tool:String})")
        values.append(("filter_tool", given["tool"]))
    try:
        for name, op in (("since", ">="), ("until", "<")):
            if name in given:
                compare("started_us", op, name, "Int64", epoch_ns(parse_time(given[name])) // 1000)
        for name, op in (("min_duration", ">="), ("max_duration", "<=")):
            if name in given:
                compare("duration_ms", op, name, "Float64", parse_duration_ms(given[name], name))
    except (TypeError, ValueError, OverflowError):
        return None  # filter_runs says what is wrong with the value
    if "has_errors" in given:  # a run with errors: any error counted, or a failed run
        if type(given["has_errors"]) is not bool:
            return None
        where.append(("" if given["has_errors"] else "NOT ") + "(failed OR ifNull(status = 'error', 0))")
    for name in ("agent", "starting_agent"):
        if name in given:
            agents = [given[name]] if isinstance(given[name], str) else list(given[name])
            if not all(type(agent) is str for agent in agents):
                return None
            if name == "agent":  # any agent that acted: the starting one or one handed to
                where.append(
                    "(has({filter_agents:Array(String)}, agent)"
                    " OR hasAny(step_agents, {filter_agents:Array(String)}))"
                )
            else:
                where.append("has({filter_starting_agents:Array(String)}, agent)")
            values.append((f"filter_{name}s", tuple(agents)))
    ascending = given.get("ascending")
    if given.get("order_by", "started") == "duration":
        order, back = _ORDERS["duration", bool(ascending)]
    else:
        order, back = _ORDERS["started", ascending is not False]
    return RunFilter(tuple(where), tuple(values)), order, back
