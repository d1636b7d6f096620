"""The SQL ``report`` adds: the spans of the runs whose waterfalls it embeds and every failed
tool call (:func:`scan_query`), and each run's tool call durations (:func:`tool_durations_query`,
also what ``Run.tool_durations_ms`` reads)."""

from __future__ import annotations

import string
from collections.abc import Set

from steptrace.analysis._clickhouse.sql import ONE_COPY_PER_SPAN, RECORD_COLUMNS, Query, Window, merged

_TOOL_DURATIONS_SQL = """SELECT
    run_id,
    arrayMap(x -> (x.2, x.3), arraySort(x -> x.1, groupArray(tuple(end_ns, tool_name, Duration)))) AS calls
FROM (
    SELECT
        SpanAttributes['steptrace.run_id'] AS run_id,
        TraceId,
        SpanId,
        toUnixTimestamp64Nano(Timestamp) + toInt64(Duration) AS end_ns,
        if(mapContains(SpanAttributes, 'gen_ai.tool.name'), SpanAttributes['gen_ai.tool.name'], SpanName)
            AS tool_name,
        Duration
    FROM $table
    WHERE $where
    $one_copy
)
WHERE run_id != ''
GROUP BY run_id"""

# In end order: the order the JSONL exporter wrote them.
_SCAN_SQL = """SELECT
$columns
FROM $table
WHERE $where
      AND (SpanAttributes['steptrace.run_id'] IN {run_ids:Array(String)}
           OR (SpanName = 'tool_execution' AND StatusCode IN ('Error', 'STATUS_CODE_ERROR')
               AND SpanAttributes['steptrace.run_id'] != ''))
ORDER BY start_ns + Duration, SpanId
$one_copy"""


def tool_durations_query(table: str, window: Window, run_id: str | None = None) -> Query:
    """Each run's tool call durations (ns), per tool in end order: the tool spans alone."""
    where = window.spans_where()
    sql = where.sql + "\n      AND SpanName = 'tool_execution'"
    parameters = {}
    if run_id is not None:
        sql += "\n      AND SpanAttributes['steptrace.run_id'] = {run_id:String}"
        parameters["run_id"] = run_id
    else:
        sql += "\n      AND mapContains(SpanAttributes, 'steptrace.run_id')"
    text = string.Template(_TOOL_DURATIONS_SQL).substitute(table=table, where=sql, one_copy=ONE_COPY_PER_SPAN)
    return Query(text, merged(where.parameters, parameters))


def scan_query(table: str, window: Window, run_ids: Set[str]) -> Query:
    """The spans a many-run report reads: those of ``run_ids`` and every failed tool call."""
    where = window.spans_where()
    sql = string.Template(_SCAN_SQL).substitute(
        columns=RECORD_COLUMNS, table=table, where=where.sql, one_copy=ONE_COPY_PER_SPAN
    )
    return Query(sql, merged(where.parameters, {"run_ids": sorted(run_ids)}))
