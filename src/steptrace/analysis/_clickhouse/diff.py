"""The SQL of ``diff``: each run's fields (:func:`runs.metrics_query`), then one row per
release with what :class:`SideStats` compares, float for float as the JSONL path computes it."""

from __future__ import annotations

import string

from steptrace.analysis._clickhouse.runs import RunFilter, metrics_query
from steptrace.analysis._clickhouse.sql import Query, Window, indented, merged


def percentile_sql(values: str, pct: int) -> str:
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


def releases_query(table: str, window: Window, run_filter: RunFilter) -> Query:
    """Per release, what ``diff`` compares: one GROUP BY run_id, then one GROUP BY release."""
    metrics = metrics_query(table, window)
    sql = string.Template(_RELEASES_SQL).substitute(
        metrics=indented(metrics.sql),
        predicates="".join(f"\n  AND {predicate}" for predicate in run_filter.predicates),
        p50=percentile_sql("durations", 50),
        p95=percentile_sql("durations", 95),
        tool_p95=percentile_sql(
            "arraySort(arrayMap(c -> c.2 / 1e6, arrayFilter(c -> c.1 = tool, calls)))", 95
        ),
    )
    return Query(sql, merged(metrics.parameters, run_filter.parameters))
